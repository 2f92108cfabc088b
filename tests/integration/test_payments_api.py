"""Payments and credit through the ops API (BILLING_RULES 6), against the Stripe double, on
both databases: an out-of-band overpayment is credited once however it is repeated; a
refund needs an ended contract and a third-party bank confirmation and debits the balance
once; account numbers are kept masked; an extension pauses Stripe's collection until its
date."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import stripe
from flask.testing import FlaskClient
from sqlalchemy import Engine, select

from connector.adapters.database import make_session_factory
from connector.adapters.models import BankConfirmation, CreditEntry, Payment, Refund
from connector.adapters.stripe_port import StripeClientPort
from connector.domain.stripe_events import CreditSource
from connector.services.apikeys import Scope
from connector.services.payment_jobs import run_payment_jobs
from stripe_sandbox.double import StripeDouble
from tests import stripe_setup
from tests.helpers import buying

PAY = r"/v1/invoices/in_\w+/pay"
BALANCE_WRITES = r"/v1/customers/cus_\w+/balance_transactions"


@dataclass
class Contract:
    stripe_customer_id: str
    stripe_subscription_id: str
    stripe_invoice_id: str  # the first invoice: open, 3,650.00 due


@pytest.fixture
def contract(
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    double: StripeDouble,
) -> Contract:
    """A registered contract, and an invoice of its customer still open: 3,650.00 whose
    card payment was declined."""
    price = stripe_setup.price(stripe_client, 36500)
    sub = stripe_setup.subscription(stripe_client, [(price, 10)])
    response = client.post(
        "/v1/subscriptions",
        json={
            "stripe_subscription_id": sub.id,
            "seat_types": [{"name": "users", "stripe_price_id": price}],
        },
        headers=auth,
    )
    assert response.status_code == 201, response.json
    customer = str(sub.customer)
    draft = stripe_client.v1.invoices.create(params={"customer": customer, "auto_advance": True})
    stripe_client.v1.invoice_items.create(
        params={
            "customer": customer,
            "invoice": draft.id or "",
            "amount": 365000,
            "currency": "usd",
            "description": "Seats",
        }
    )
    double.fail_next_payments(1)
    invoice = stripe_client.v1.invoices.finalize_invoice(draft.id or "")
    assert (invoice.status, invoice.amount_remaining) == ("open", 365000)
    return Contract(customer, sub.id, invoice.id or "")


@pytest.fixture
def ops(make_key: Callable[..., str]) -> dict[str, str]:
    """Billing ops: reads billing data and changes payments (a key named 'billing-ops')."""
    secret = make_key(Scope.OPS_WRITE, Scope.BILLING_READ, name="billing-ops")
    return {"Authorization": f"Bearer {secret}"}


def pay(
    client: FlaskClient,
    ops: dict[str, str],
    contract: Contract,
    amount: int,
    reference: str = "TR-2026-0042",
    key: str | None = None,
) -> Any:
    headers = buying(ops) if key is None else {**ops, "Idempotency-Key": key}
    return client.post(
        "/v1/ops/payments",
        json={
            "transfer_reference": reference,
            "stripe_invoice_id": contract.stripe_invoice_id,
            "amount": amount,
            "currency": "usd",
        },
        headers=headers,
    )


def rows(engine: Engine, model: Any) -> list[Any]:
    with make_session_factory(engine)() as session:
        return list(session.scalars(select(model).order_by(model.id)))


def test_overpaid_transfer_is_credited_once_however_often_it_is_recorded(
    client: FlaskClient,
    ops: dict[str, str],
    contract: Contract,
    stripe_client: stripe.StripeClient,
    double: StripeDouble,
    engine: Engine,
) -> None:
    first = pay(client, ops, contract, 370000, key="transfer-42")
    assert first.status_code == 201, first.json
    body = first.json
    assert body["status"] == "completed"
    assert (body["applied"]["amount"], body["excess"]["amount"]) == (365000, 5000)
    assert body["actor"].startswith("billing-ops")

    same_key = pay(client, ops, contract, 370000, key="transfer-42")
    assert same_key.status_code == 201 and same_key.headers["Idempotent-Replayed"] == "true"
    assert same_key.json == body
    new_key = pay(client, ops, contract, 370000)  # the same transfer reference
    assert new_key.status_code == 201
    assert (new_key.json["id"], new_key.json["status"]) == (body["id"], "completed")
    other = pay(client, ops, contract, 999999)
    assert other.status_code == 409
    assert other.json["error"]["code"] == "transfer_reference_reused"

    invoice = stripe_client.v1.invoices.retrieve(contract.stripe_invoice_id)
    assert (invoice.status, invoice.amount_remaining) == ("paid", 0)
    assert stripe_client.v1.customers.retrieve(contract.stripe_customer_id).balance == -5000
    assert len(double.requests_to("POST", PAY)) == 1
    [credit] = double.requests_to("POST", BALANCE_WRITES)
    assert credit.params["amount"] == "-5000"
    assert credit.params["metadata"]["transfer_reference"] == "TR-2026-0042"
    assert credit.idempotency_key and credit.idempotency_key.startswith("seatsync-")
    [entry] = rows(engine, CreditEntry)
    assert (entry.source, entry.amount, entry.reference) == (
        CreditSource.OUT_OF_BAND_EXCESS,
        5000,
        "TR-2026-0042",
    )
    assert entry.actor.startswith("billing-ops")

    credit_view = client.get(f"/v1/ops/accounts/{contract.stripe_customer_id}/credit", headers=ops)
    assert credit_view.status_code == 200, credit_view.json
    assert credit_view.json["credit_balance"] == {"amount": 5000, "currency": "usd"}
    [history] = credit_view.json["history"]
    assert (history["source"], history["amount"]["amount"]) == ("out_of_band_excess", 5000)


def test_payment_needs_an_idempotency_key_and_refuses_a_part_payment(
    client: FlaskClient,
    ops: dict[str, str],
    contract: Contract,
    double: StripeDouble,
    engine: Engine,
) -> None:
    no_key = client.post(
        "/v1/ops/payments",
        json={
            "transfer_reference": "TR-1",
            "stripe_invoice_id": contract.stripe_invoice_id,
            "amount": 370000,
            "currency": "usd",
        },
        headers=ops,
    )
    assert no_key.status_code == 400
    assert no_key.json["error"]["code"] == "idempotency_key_required"
    part = pay(client, ops, contract, 100000)
    assert part.status_code == 409
    assert part.json["error"]["code"] == "payment_less_than_due"
    assert "in full" in part.json["error"]["message"]
    assert part.json["error"]["details"]["amount_remaining"] == 365000
    assert rows(engine, Payment) == []
    assert double.requests_to("POST", PAY) == []
    exact = pay(client, ops, contract, 365000, reference="TR-2")  # nothing to credit
    assert exact.status_code == 201 and exact.json["excess"]["amount"] == 0
    assert double.requests_to("POST", BALANCE_WRITES) == []
    paid_already = pay(client, ops, contract, 365000, reference="TR-3")
    assert paid_already.status_code == 409
    assert paid_already.json["error"]["code"] == "invoice_not_open"


def test_credit_whose_answer_was_lost_is_found_again_not_sent_twice(
    client: FlaskClient,
    ops: dict[str, str],
    contract: Contract,
    stripe_client: stripe.StripeClient,
    double: StripeDouble,
    engine: Engine,
) -> None:
    # The credit reaches Stripe, but every answer is lost (more times than the SDK retries).
    double.inject_fault("POST", BALANCE_WRITES, status=500, times=10, apply_first=True)
    lost = pay(client, ops, contract, 370000)
    assert lost.status_code == 503, lost.json
    [payment] = rows(engine, Payment)
    assert payment.status == "invoice_paid" and payment.credit_sent_at is not None
    double.faults.clear()
    double.advance(2 * 86400)  # beyond Stripe's 24 h replay: the metadata finds the credit
    double._idempotency.clear()
    retried = pay(client, ops, contract, 370000)  # a new key, the same transfer
    assert retried.status_code == 201, retried.json
    assert retried.json["status"] == "completed"
    assert stripe_client.v1.customers.retrieve(contract.stripe_customer_id).balance == -5000
    assert len(double.requests_to("POST", PAY)) == 1
    assert len(rows(engine, CreditEntry)) == 1


def test_unfinished_payment_is_finished_by_the_job(
    app: Any,
    client: FlaskClient,
    ops: dict[str, str],
    contract: Contract,
    stripe_client: stripe.StripeClient,
    double: StripeDouble,
    engine: Engine,
    clock: Callable[[], datetime],
) -> None:
    double.inject_fault("POST", PAY, status=500, times=10)  # Stripe down for the payment
    assert pay(client, ops, contract, 370000).status_code == 503
    [payment] = rows(engine, Payment)
    assert payment.status == "recorded" and payment.last_error
    double.faults.clear()
    sessions, port = make_session_factory(engine), StripeClientPort(stripe_client)
    key_prefix = app.extensions["seatsync"].key_prefix
    assert run_payment_jobs(sessions, port, clock, key_prefix).payments_completed == 0  # young
    double.advance(600)
    assert run_payment_jobs(sessions, port, clock, key_prefix).payments_completed == 1
    [payment] = rows(engine, Payment)
    assert payment.status == "completed"
    assert stripe_client.v1.customers.retrieve(contract.stripe_customer_id).balance == -5000


def confirm(
    client: FlaskClient, ops: dict[str, str], contract: Contract, reference: str = "BL-7"
) -> Any:
    return client.post(
        f"/v1/ops/accounts/{contract.stripe_customer_id}/bank-confirmations",
        json={
            "reference": reference,
            "document_kind": "bank_letter",
            "account_number": "DE89 3704 0044 0532 0130 00",
            "account_holder": "Acme GmbH",
            "bank_name": "Commerzbank",
        },
        headers=ops,
    )


def test_bank_account_number_is_kept_masked(
    client: FlaskClient, ops: dict[str, str], contract: Contract, engine: Engine
) -> None:
    recorded = confirm(client, ops, contract)
    assert recorded.status_code == 201, recorded.json
    assert recorded.json["account_number"] == "•" * 18 + "3000"
    assert recorded.json["account_last4"] == "3000"
    assert recorded.json["verified_by"].startswith("billing-ops")
    again = confirm(client, ops, contract)
    assert again.status_code == 201 and again.json["id"] == recorded.json["id"]
    [row] = rows(engine, BankConfirmation)
    stored = " ".join(str(getattr(row, c.name)) for c in BankConfirmation.__table__.columns)
    assert "0532" not in stored and "370400440532013000" not in stored
    bad = client.post(
        f"/v1/ops/accounts/{contract.stripe_customer_id}/bank-confirmations",
        json={
            "reference": "x",
            "document_kind": "selfie",
            "account_number": "12",
            "account_holder": "Acme",
        },
        headers=ops,
    )
    assert bad.status_code == 422


def refund(client: FlaskClient, ops: dict[str, str], contract: Contract, key: str) -> Any:
    return client.post(
        f"/v1/ops/accounts/{contract.stripe_customer_id}/refunds",
        json={"note": "contract ended"},
        headers={**ops, "Idempotency-Key": key},
    )


def test_refund_is_refused_while_a_subscription_is_live_and_without_a_confirmation(
    client: FlaskClient,
    ops: dict[str, str],
    contract: Contract,
    stripe_client: stripe.StripeClient,
    double: StripeDouble,
    engine: Engine,
) -> None:
    assert pay(client, ops, contract, 370000).status_code == 201  # 50.00 of credit
    assert confirm(client, ops, contract).status_code == 201
    live = refund(client, ops, contract, "refund-1")
    assert live.status_code == 409
    assert live.json["error"]["code"] == "subscription_active"

    stripe_client.v1.subscriptions.cancel(contract.stripe_subscription_id)
    with make_session_factory(engine).begin() as session:  # forget the confirmation
        for row in session.scalars(select(BankConfirmation)):
            session.delete(row)
    unconfirmed = refund(client, ops, contract, "refund-1")  # refusals are not stored
    assert unconfirmed.status_code == 409
    assert unconfirmed.json["error"]["code"] == "bank_confirmation_missing"
    assert rows(engine, Refund) == []
    assert len(double.requests_to("POST", BALANCE_WRITES)) == 1  # the payment's credit only


def test_refund_debits_the_remaining_credit_once_to_the_confirmed_account(
    client: FlaskClient,
    ops: dict[str, str],
    contract: Contract,
    stripe_client: stripe.StripeClient,
    double: StripeDouble,
    engine: Engine,
) -> None:
    assert pay(client, ops, contract, 370000).status_code == 201  # 50.00 of credit
    assert confirm(client, ops, contract).status_code == 201
    stripe_client.v1.subscriptions.cancel(contract.stripe_subscription_id)

    done = refund(client, ops, contract, "refund-1")
    assert done.status_code == 201, done.json
    view = done.json
    assert (view["status"], view["amount"]) == ("instructed", {"amount": 5000, "currency": "usd"})
    assert view["account_number"].endswith("3000") and "0532" not in view["account_number"]
    assert stripe_client.v1.customers.retrieve(contract.stripe_customer_id).balance == 0

    assert refund(client, ops, contract, "refund-1").json == view  # replayed
    open_one = refund(client, ops, contract, "refund-2")
    assert open_one.status_code == 409 and open_one.json["error"]["code"] == "refund_open"

    sent = client.post(
        f"/v1/ops/refunds/{view['id']}/sent", json={"bank_reference": "OUT-1"}, headers=ops
    )
    assert sent.status_code == 200, sent.json
    assert (sent.json["status"], sent.json["bank_reference"]) == ("sent", "OUT-1")
    nothing_left = refund(client, ops, contract, "refund-3")
    assert nothing_left.status_code == 409
    assert nothing_left.json["error"]["code"] == "no_credit"

    debits = [r for r in double.requests_to("POST", BALANCE_WRITES) if r.params["amount"] == "5000"]
    assert len(debits) == 1
    entries = [(e.source, e.amount) for e in rows(engine, CreditEntry)]
    assert entries == [(CreditSource.OUT_OF_BAND_EXCESS, 5000), (CreditSource.REFUND, -5000)]
    credit = client.get(f"/v1/ops/accounts/{contract.stripe_customer_id}/credit", headers=ops)
    assert credit.json["credit_balance"]["amount"] == 0
    assert [r["status"] for r in credit.json["refunds"]] == ["sent"]
    assert [h["source"] for h in credit.json["history"]] == ["refund", "out_of_band_excess"]


def test_cash_balance_is_shown_beside_the_credit(
    client: FlaskClient, ops: dict[str, str], contract: Contract, double: StripeDouble
) -> None:
    double.fund_cash_balance(contract.stripe_customer_id, 2500, "usd")
    view = client.get(f"/v1/ops/accounts/{contract.stripe_customer_id}/credit", headers=ops)
    assert view.status_code == 200, view.json
    assert view.json["cash_balance"] == [{"amount": 2500, "currency": "usd"}]
    reader = client.get("/v1/ops/accounts/cus_unknown/credit", headers=ops)
    assert reader.status_code == 404


def test_extension_pauses_collection_until_its_date_then_the_job_resumes_it(
    app: Any,
    client: FlaskClient,
    ops: dict[str, str],
    contract: Contract,
    stripe_client: stripe.StripeClient,
    double: StripeDouble,
    engine: Engine,
    clock: Callable[[], datetime],
) -> None:
    now = clock()
    first = client.post(
        f"/v1/ops/invoices/{contract.stripe_invoice_id}/extend",
        json={"pay_by": (now + timedelta(days=10)).isoformat(), "reason": "customer asked"},
        headers=ops,
    )
    assert first.status_code == 200, first.json
    assert first.json["status"] == "paused"
    assert stripe_client.v1.invoices.retrieve(contract.stripe_invoice_id).auto_advance is False
    pay_by = (now + timedelta(days=14)).astimezone(UTC)
    second = client.post(
        f"/v1/ops/invoices/{contract.stripe_invoice_id}/extend",
        json={"pay_by": pay_by.isoformat(), "reason": "asked again"},
        headers=ops,
    )
    assert second.status_code == 200 and second.json["status"] == "paused"

    sessions, port = make_session_factory(engine), StripeClientPort(stripe_client)
    key_prefix = app.extensions["seatsync"].key_prefix
    double.advance(12 * 86400)  # past the first date, not the second
    assert run_payment_jobs(sessions, port, clock, key_prefix).collections_resumed == 0
    assert stripe_client.v1.invoices.retrieve(contract.stripe_invoice_id).auto_advance is False
    double.advance(3 * 86400)
    assert run_payment_jobs(sessions, port, clock, key_prefix).collections_resumed == 1
    assert stripe_client.v1.invoices.retrieve(contract.stripe_invoice_id).auto_advance is True
    assert run_payment_jobs(sessions, port, clock, key_prefix).collections_resumed == 0

    past = client.post(
        f"/v1/ops/invoices/{contract.stripe_invoice_id}/extend",
        json={"pay_by": "2020-01-01T00:00:00Z", "reason": "too late"},
        headers=ops,
    )
    assert past.status_code == 422
    assert pay(client, ops, contract, 365000).status_code == 201
    paid = client.post(
        f"/v1/ops/invoices/{contract.stripe_invoice_id}/extend",
        json={"pay_by": (clock() + timedelta(days=5)).isoformat(), "reason": "late"},
        headers=ops,
    )
    assert paid.status_code == 409 and paid.json["error"]["code"] == "invoice_not_open"


def test_reading_needs_billing_read_and_changing_needs_ops_write(
    client: FlaskClient, make_key: Callable[..., str], contract: Contract
) -> None:
    reader = {"Authorization": f"Bearer {make_key(Scope.BILLING_READ, name='reader')}"}
    assert (
        client.get(f"/v1/ops/accounts/{contract.stripe_customer_id}/credit", headers=reader)
    ).status_code == 200
    assert pay(client, reader, contract, 370000).status_code == 403
    backend = {"Authorization": f"Bearer {make_key(Scope.SEATS_WRITE, name='backend')}"}
    assert (
        client.get(f"/v1/ops/accounts/{contract.stripe_customer_id}/credit", headers=backend)
    ).status_code == 403
