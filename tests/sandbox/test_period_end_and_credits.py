"""Where the double follows Stripe's documentation closely: pending prorations collected when
a subscription cancels at the period end, flexible mode's one credit per reversed debit
(``proration_details.credited_items``), deleting draft invoices (``invoice.deleted``), the
cash-balance test helper and the line item's top-level ``subscription``."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
import stripe

from stripe_sandbox.calendar_math import round_half_away
from stripe_sandbox.double import StripeDouble
from tests.sandbox.helpers import make_plan, make_subscription, ts

YEAR = (ts(2026, 1, 1), ts(2027, 1, 1))


def _event_types(double: StripeDouble) -> list[str]:
    return [e["type"] for e in double.events]


def _change(
    client: stripe.StripeClient, sub: stripe.Subscription, qty: int, at: int, behavior: str
) -> None:
    client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": sub.items.data[0].id, "quantity": qty}],
            "proration_behavior": behavior,  # type: ignore[typeddict-item]
            "proration_date": at,
        },
    )


def _pending(client: stripe.StripeClient, customer: str) -> list[stripe.InvoiceItem]:
    items = client.v1.invoice_items.list(params={"customer": customer, "pending": True}).data
    return sorted(items, key=lambda ii: ii.id)


# --- 1. cancel at period end ----------------------------------------------------------


def test_pending_prorations_are_collected_when_cancelled_at_period_end(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    """Stripe (API reference, "Cancel a subscription"): "If you've set the subscription to
    cancel at the end of the period, any pending prorations are also left in place and
    collected at the end of the period"."""
    price = make_plan(client, unit_amount=3100)  # 100 a day in January
    sub = make_subscription(client, price, 10)
    double.advance_to(ts(2026, 1, 21))
    _change(client, sub, 12, ts(2026, 1, 21), "create_prorations")  # 11 days x 2 seats
    client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
    pending = [ii.amount for ii in _pending(client, sub.customer)]
    assert sorted(pending) == [-11000, 13200]
    preview = client.v1.invoices.create_preview(params={"subscription": sub.id})
    assert sorted(line.amount for line in preview.lines.data) == [-11000, 13200]  # no renewal

    double.advance_to(ts(2026, 2, 1))  # the period ends: canceled, final invoice drafted
    canceled = client.v1.subscriptions.retrieve(sub.id)
    assert (canceled.status, canceled.ended_at) == ("canceled", ts(2026, 2, 1))
    final = client.v1.invoices.retrieve(str(canceled.latest_invoice))
    assert final.id != sub.latest_invoice
    assert (final.status, final.billing_reason, final.total) == (
        "draft",
        "subscription_cycle",
        2200,
    )
    assert [line.amount for line in final.lines.data] == pending  # no new period billed
    assert _pending(client, sub.customer) == []

    double.advance_to(ts(2026, 2, 1, 1))  # finalized and charged an hour later, like renewals
    final = client.v1.invoices.retrieve(final.id or "")
    assert (final.status, final.amount_paid) == ("paid", 2200)
    types = _event_types(double)
    deleted = types.index("customer.subscription.deleted")
    assert types[deleted + 1 :].count("invoice.created") == 1
    assert "invoice.paid" in types[deleted:]
    double.advance_to(ts(2026, 4, 1))  # and nothing more
    assert len(client.v1.invoices.list(params={"subscription": sub.id}).data) == 2


def test_cancel_at_period_end_without_pending_items_ends_without_an_invoice(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    sub = make_subscription(client, make_plan(client, unit_amount=1000), 3)
    client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
    with pytest.raises(stripe.InvalidRequestError) as nothing:
        client.v1.invoices.create_preview(params={"subscription": sub.id})
    assert nothing.value.code == "invoice_upcoming_none"
    double.advance_to(ts(2026, 3, 1))
    canceled = client.v1.subscriptions.retrieve(sub.id)
    assert canceled.status == "canceled" and canceled.latest_invoice == sub.latest_invoice
    assert len(client.v1.invoices.list(params={"subscription": sub.id}).data) == 1


# --- 2. flexible mode: one credit per debit ------------------------------------------


def test_flexible_credits_each_debit_it_reverses_with_its_own_line(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    """Stripe ("Compare classic and flexible billing mode"): credit prorations "use the
    original debited amount"; "if the time period being credited was originally billed
    across multiple debits, Stripe generates multiple credit prorations".  10 seats billed
    for 2026, 12 from 1 Mar, then 11 from 1 Feb: the 1 Feb credit spans the year's line
    (1 Feb - 1 Mar, 10 seats) and the 1 Mar debit (12 seats, all of it)."""
    price = make_plan(client, unit_amount=36500, interval="year")  # 100 a seat-day
    sub = make_subscription(client, price, 10)
    first_invoice = client.v1.invoices.retrieve(str(sub.latest_invoice))
    double.advance_to(ts(2026, 3, 10))
    _change(client, sub, 12, ts(2026, 3, 1), "create_prorations")
    [debit_12] = [ii for ii in _pending(client, sub.customer) if ii.amount > 0]
    assert debit_12.amount == 12 * 100 * 306

    before = {ii.id for ii in _pending(client, sub.customer)}
    _change(client, sub, 11, ts(2026, 2, 1), "create_prorations")
    created = [ii for ii in _pending(client, sub.customer) if ii.id not in before]
    lines = sorted(
        ((ii.amount, ii.quantity, ii.period.start, ii.period.end) for ii in created),
        key=lambda x: x[2:],
    )
    assert lines == [
        (-10 * 100 * 28, 10, ts(2026, 2, 1), ts(2026, 3, 1)),  # the year's line, Feb only
        (11 * 100 * 334, 11, ts(2026, 2, 1), YEAR[1]),  # the new debit
        (-debit_12.amount, 12, ts(2026, 3, 1), YEAR[1]),  # the 1 Mar debit, all of it
    ]
    by_amount = {ii.amount: ii for ii in created}
    year_credit = by_amount[-28000].proration_details
    assert year_credit is not None and year_credit.credited_items is not None
    assert year_credit.credited_items.type == "invoice_line_items"
    details = year_credit.credited_items.invoice_line_item_details
    assert details is not None
    assert (details.invoice, details.invoice_line_items) == (
        first_invoice.id,
        [first_invoice.lines.data[0].id],
    )
    pending_credit = by_amount[-debit_12.amount].proration_details
    assert pending_credit is not None and pending_credit.credited_items is not None
    assert (pending_credit.credited_items.type, pending_credit.credited_items.invoice_item) == (
        "invoice_item",
        debit_12.id,
    )

    # Invoiced together, the credit line names the line that billed its debit.
    inv = client.v1.invoices.create(
        params={
            "customer": sub.customer,
            "subscription": sub.id,
            "pending_invoice_items_behavior": "include",
        }
    )
    by_item = {
        line.parent.subscription_item_details.invoice_item: line
        for line in inv.lines.data
        if line.parent and line.parent.subscription_item_details
    }
    credit_line = by_item[by_amount[-debit_12.amount].id]
    assert credit_line.parent is not None and credit_line.parent.subscription_item_details
    credited = credit_line.parent.subscription_item_details.proration_details
    assert credited is not None and credited.credited_items is not None
    assert credited.credited_items.invoice == inv.id
    assert credited.credited_items.invoice_line_items == [by_item[debit_12.id].id]
    assert inv.total == 1 * 100 * 334  # in all: one seat more from 1 Feb
    assert inv.lines.data[0].subscription == sub.id  # still at the top of the line too


def test_classic_writes_one_credit_from_the_current_quantity(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    price = make_plan(client, unit_amount=36500, interval="year")
    sub = make_subscription(client, price, 10, billing_mode="classic")
    double.advance_to(ts(2026, 3, 10))
    _change(client, sub, 12, ts(2026, 3, 1), "create_prorations")
    before = {ii.id for ii in _pending(client, sub.customer)}
    _change(client, sub, 11, ts(2026, 2, 1), "create_prorations")
    new = [ii for ii in _pending(client, sub.customer) if ii.id not in before]
    assert sorted(ii.amount for ii in new) == [-12 * 100 * 334, 11 * 100 * 334]


def test_a_partly_used_debit_is_credited_as_a_share_of_its_own_amount(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    """Each credit is the unused share of what its debit billed, rounded on its own: here
    one minor unit less than prorating the quantity over the whole period would give."""
    price = make_plan(client, unit_amount=10000, interval="year")
    sub = make_subscription(client, price, 10)
    t1, t2 = ts(2026, 3, 15, 1), ts(2026, 6, 3)
    double.advance_to(t1)
    _change(client, sub, 12, t1, "create_prorations")
    [debit] = [ii for ii in _pending(client, sub.customer) if ii.amount > 0]
    before = {ii.id for ii in _pending(client, sub.customer)}
    double.advance_to(t2)
    _change(client, sub, 11, t2, "create_prorations")
    [credit] = [
        ii for ii in _pending(client, sub.customer) if ii.id not in before and ii.amount < 0
    ]
    share = round_half_away(Fraction(debit.amount * (YEAR[1] - t2), YEAR[1] - t1))
    whole_period = round_half_away(Fraction(12 * 10000 * (YEAR[1] - t2), YEAR[1] - YEAR[0]))
    assert (credit.amount, share, whole_period) == (-69698, 69698, 69699)


# --- 3. invoice.deleted and the cash balance -----------------------------------------


def test_deleting_a_draft_emits_invoice_deleted_and_frees_its_items(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    customer = client.v1.customers.create(params={"name": "Acme"}).id
    client.v1.invoice_items.create(params={"customer": customer, "amount": 500, "currency": "usd"})
    draft = client.v1.invoices.create(
        params={
            "customer": customer,
            "auto_advance": False,
            "pending_invoice_items_behavior": "include",
        }
    )
    assert draft.total == 500 and _pending(client, customer) == []
    deleted = client.v1.invoices.delete(draft.id or "")
    assert (deleted.id, deleted.deleted) == (draft.id, True)
    [event] = [e for e in double.events if e["type"] == "invoice.deleted"]
    assert event["data"]["object"]["id"] == draft.id
    assert event["data"]["object"]["status"] == "draft"
    with pytest.raises(stripe.InvalidRequestError) as gone:
        client.v1.invoices.retrieve(draft.id or "")
    assert gone.value.http_status == 404
    assert [ii.amount for ii in _pending(client, customer)] == [500]

    finalized = client.v1.invoices.create(
        params={"customer": customer, "pending_invoice_items_behavior": "include"}
    )
    client.v1.invoices.finalize_invoice(finalized.id or "")
    with pytest.raises(stripe.InvalidRequestError) as not_draft:
        client.v1.invoices.delete(finalized.id or "")
    assert not_draft.value.code == "invoice_not_editable"


def test_a_draft_a_subscription_created_cannot_be_deleted(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    sub = make_subscription(client, make_plan(client, unit_amount=1000), 2)
    double.advance_to(ts(2026, 2, 1))  # the renewal is a draft for an hour
    renewal = client.v1.subscriptions.retrieve(sub.id).latest_invoice
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.invoices.delete(str(renewal))
    assert refused.value.http_status == 400
    assert client.v1.invoices.retrieve(str(renewal)).status == "draft"
    assert "invoice.deleted" not in _event_types(double)


def test_cash_balance_funded_by_the_test_helper(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    customer = client.v1.customers.create(params={"name": "Acme"}).id
    txn = client.v1.test_helpers.customers.fund_cash_balance(
        customer, params={"amount": 5000, "currency": "eur", "reference": "INV-7"}
    )
    assert (txn.object, txn.type, txn.net_amount, txn.ending_balance) == (
        "customer_cash_balance_transaction",
        "funded",
        5000,
        5000,
    )
    client.v1.test_helpers.customers.fund_cash_balance(
        customer, params={"amount": 2500, "currency": "eur"}
    )
    shown = client.v1.customers.retrieve(customer, params={"expand": ["cash_balance"]})
    assert shown.cash_balance is not None and shown.cash_balance.available is not None
    assert shown.cash_balance.available.to_dict() == {"eur": 7500}
    direct = client.v1.customers.cash_balance.retrieve(customer)
    assert direct.available is not None and direct.available.to_dict() == {"eur": 7500}
    assert shown.balance == 0  # the cash balance is not the credit balance
    funded = [
        json.loads(body)["data"]["object"]
        for body, _sig in double.take_webhook_deliveries()
        if json.loads(body)["type"] == "customer_cash_balance_transaction.created"
    ]
    assert [(t["net_amount"], t["ending_balance"]) for t in funded] == [(5000, 5000), (2500, 7500)]
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.test_helpers.customers.fund_cash_balance(
            customer, params={"amount": 0, "currency": "eur"}
        )
    assert refused.value.param == "amount"
