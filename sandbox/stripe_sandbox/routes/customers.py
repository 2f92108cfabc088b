"""Routes for ``/v1/customers`` and their balance transactions.

Part of ``stripe_sandbox``, a test and demo tool: never used with real money.
"""

from __future__ import annotations

import re

from stripe_sandbox.errors import StripeError, bad_request
from stripe_sandbox.form import (
    Params,
    check_known,
    expand_list,
    metadata_update,
    opt_dict,
    opt_str,
    req_int,
    req_str,
)
from stripe_sandbox.objects import Json
from stripe_sandbox.objects.customers import cash_balance_json
from stripe_sandbox.routes.registry import (
    created_filter,
    metadata_of,
    newest_first,
    paginate,
    route,
)
from stripe_sandbox.state import StripeState


@route("POST", r"/v1/customers")
def create_customer(state: StripeState, _m: re.Match[str], p: Params) -> Json:
    check_known(
        p,
        [
            "email",
            "name",
            "metadata",
            "test_clock",
            "description",
            "payment_method",
            "invoice_settings",
        ],
    )
    clock = opt_str(p, "test_clock")
    if clock is not None:
        state.test_clock(clock, param="test_clock")
    # Accepted for Stripe's test cards (pm_card_visa); the sandbox's payments succeed
    # unless a test arms a failure, whatever the payment method.
    opt_str(p, "payment_method")
    settings = opt_dict(p, "invoice_settings")
    if settings is not None:
        check_known(settings, ["default_payment_method"], "invoice_settings")
        opt_str(settings, "default_payment_method", "invoice_settings[default_payment_method]")
    return state.customer_json(
        state.create_customer(
            email=opt_str(p, "email"),
            name=opt_str(p, "name"),
            metadata=metadata_of(p),
            test_clock=clock,
            description=opt_str(p, "description"),
        )
    )


@route("GET", r"/v1/customers/(?P<id>[^/]+)")
def get_customer(state: StripeState, m: re.Match[str], p: Params) -> Json:
    check_known(p, [])
    c = state.customer(m["id"])
    found = state.customer_json(c)
    if "cash_balance" in expand_list(p):  # includable: present only when expanded
        found["cash_balance"] = cash_balance_json(c)
    return found


@route("GET", r"/v1/customers/(?P<id>[^/]+)/cash_balance")
def get_cash_balance(state: StripeState, m: re.Match[str], p: Params) -> Json:
    check_known(p, [])
    return cash_balance_json(state.customer(m["id"]))


@route("POST", r"/v1/test_helpers/customers/(?P<id>[^/]+)/fund_cash_balance")
def fund_cash_balance(state: StripeState, m: re.Match[str], p: Params) -> Json:
    """Stripe's test helper "Create a test incoming bank transfer": the funds land in the
    customer's cash balance (the sandbox does not apply them to invoices)."""
    check_known(p, ["amount", "currency", "reference"])
    c = state.customer(m["id"])
    amount = req_int(p, "amount")
    if amount <= 0:
        raise bad_request("Invalid positive integer", param="amount")
    return state.fund_cash_balance(
        c,
        amount=amount,
        currency=req_str(p, "currency").lower(),
        reference=opt_str(p, "reference"),
    )


@route("POST", r"/v1/customers/(?P<id>[^/]+)")
def update_customer(state: StripeState, m: re.Match[str], p: Params) -> Json:
    check_known(p, ["email", "name", "metadata", "description"])
    c = state.customer(m["id"])
    before = state.customer_json(c)
    if "email" in p:
        c.email = opt_str(p, "email") or None
    if "name" in p:
        c.name = opt_str(p, "name") or None
    if "description" in p:
        c.description = opt_str(p, "description") or None
    c.metadata = metadata_update(c.metadata, p)
    after = state.customer_json(c)
    state.emit("customer.updated", after, {k: v for k, v in before.items() if after[k] != v})
    return after


@route("GET", r"/v1/customers")
def list_customers(state: StripeState, _m: re.Match[str], p: Params) -> Json:
    check_known(p, ["limit", "starting_after", "ending_before", "email", "created"])
    email = opt_str(p, "email")
    created = created_filter(p)
    custs = [
        c
        for c in newest_first(list(state.books.customers.values()))
        if (email is None or c.email == email) and created(c.created)
    ]
    return paginate([state.customer_json(c) for c in custs], p, "/v1/customers")


@route("POST", r"/v1/customers/(?P<id>[^/]+)/balance_transactions")
def create_balance_transaction(state: StripeState, m: re.Match[str], p: Params) -> Json:
    check_known(p, ["amount", "currency", "description", "metadata"])
    c = state.customer(m["id"])
    amount = req_int(p, "amount")
    currency = req_str(p, "currency").lower()
    txn = state.add_balance_transaction(
        c,
        amount=amount,
        currency=currency,
        type_="adjustment",
        description=opt_str(p, "description"),
        metadata=metadata_of(p),
    )
    return state.balance_transaction_json(txn)


@route("GET", r"/v1/customers/(?P<id>[^/]+)/balance_transactions")
def list_balance_transactions(state: StripeState, m: re.Match[str], p: Params) -> Json:
    check_known(p, ["limit", "starting_after", "ending_before", "created", "invoice"])
    c = state.customer(m["id"])
    invoice = opt_str(p, "invoice")
    created = created_filter(p)
    txns = [
        t
        for t in newest_first(list(state.books.balance_transactions.values()))
        if t.customer == c.id and (invoice is None or t.invoice == invoice) and created(t.created)
    ]
    return paginate(
        [state.balance_transaction_json(t) for t in txns],
        p,
        f"/v1/customers/{c.id}/balance_transactions",
    )


@route("GET", r"/v1/customers/(?P<id>[^/]+)/balance_transactions/(?P<txn>[^/]+)")
def get_balance_transaction(state: StripeState, m: re.Match[str], p: Params) -> Json:
    check_known(p, [])
    c = state.customer(m["id"])
    txn = state.books.balance_transactions.get(m["txn"])
    if txn is None or txn.customer != c.id:
        raise StripeError(
            404,
            f"No such customer balance transaction: '{m['txn']}'",
            code="resource_missing",
            param="id",
        )
    return state.balance_transaction_json(txn)
