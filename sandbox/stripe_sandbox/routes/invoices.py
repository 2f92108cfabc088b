"""Routes for ``/v1/invoices`` (incl. previews), ``/v1/invoiceitems``,
``/v1/invoice_payments``.

Part of ``stripe_sandbox``, a test and demo tool: never used with real money.
"""

from __future__ import annotations

import re

from stripe_sandbox.errors import StripeError, bad_request
from stripe_sandbox.form import (
    Params,
    check_known,
    metadata_update,
    opt_bool,
    opt_dict,
    opt_enum,
    opt_int,
    opt_list,
    opt_str,
    req_str,
)
from stripe_sandbox.objects import Customer, Json, Subscription
from stripe_sandbox.routes.registry import (
    created_filter,
    metadata_of,
    newest_first,
    paginate,
    route,
)
from stripe_sandbox.routes.subscriptions import parse_items
from stripe_sandbox.state import PRORATION_BEHAVIORS, StripeState


@route("POST", r"/v1/invoices")
def create_invoice(state: StripeState, _m: re.Match[str], p: Params) -> Json:
    check_known(
        p,
        [
            "customer",
            "subscription",
            "pending_invoice_items_behavior",
            "auto_advance",
            "collection_method",
            "metadata",
            "description",
        ],
    )
    customer = state.customer(req_str(p, "customer"), param="customer")
    sub_id = opt_str(p, "subscription")
    s = state.subscription(sub_id, param="subscription") if sub_id else None
    if s is not None and s.customer != customer.id:
        raise bad_request(
            f"The subscription {s.id} does not belong to customer {customer.id}.",
            param="subscription",
        )
    behavior = opt_enum(p, "pending_invoice_items_behavior", ["include", "exclude"]) or "exclude"
    collection = opt_enum(p, "collection_method", ["charge_automatically", "send_invoice"])
    auto = opt_bool(p, "auto_advance")
    inv = state.create_invoice(
        customer=customer,
        subscription=s,
        include_pending=behavior == "include",
        auto_advance=bool(auto),
        collection_method=collection or "charge_automatically",
        metadata=metadata_of(p),
    )
    return state.invoice_json(inv)


@route("GET", r"/v1/invoices/upcoming(?:/lines)?")
def upcoming_removed(_state: StripeState, m: re.Match[str], _p: Params) -> Json:
    """Removed from the API (use ``POST /v1/invoices/create_preview``)."""
    raise StripeError(
        404,
        f"Unrecognized request URL (GET: {m.group(0)}). Please see https://stripe.com/docs "
        "or we can help at https://support.stripe.com/.",
    )


@route("GET", r"/v1/invoices/(?P<id>[^/]+)")
def get_invoice(state: StripeState, m: re.Match[str], p: Params) -> Json:
    check_known(p, [])
    return state.invoice_json(state.invoice(m["id"]))


@route("GET", r"/v1/invoices")
def list_invoices(state: StripeState, _m: re.Match[str], p: Params) -> Json:
    check_known(
        p,
        [
            "customer",
            "subscription",
            "status",
            "limit",
            "starting_after",
            "ending_before",
            "created",
            "collection_method",
        ],
    )
    customer = opt_str(p, "customer")
    sub = opt_str(p, "subscription")
    status = opt_enum(p, "status", ["draft", "open", "paid", "uncollectible", "void"])
    created = created_filter(p)
    invs = [
        i
        for i in newest_first(list(state.books.invoices.values()))
        if (customer is None or i.customer == customer)
        and (sub is None or i.subscription == sub)
        and (status is None or i.status == status)
        and created(i.created)
    ]
    return paginate([state.invoice_json(i) for i in invs], p, "/v1/invoices")


@route("POST", r"/v1/invoices/(?P<id>[^/]+)/finalize")
def finalize_invoice(state: StripeState, m: re.Match[str], p: Params) -> Json:
    check_known(p, ["auto_advance"])
    inv = state.invoice(m["id"])
    auto = opt_bool(p, "auto_advance")
    if auto is not None:
        inv.auto_advance = auto
    state.finalize(inv, attempt_payment=True)
    return state.invoice_json(inv)


@route("POST", r"/v1/invoices/(?P<id>[^/]+)/pay")
def pay_invoice(state: StripeState, m: re.Match[str], p: Params) -> Json:
    check_known(p, ["paid_out_of_band", "off_session", "payment_method"])
    inv = state.invoice(m["id"])
    state.pay(inv, paid_out_of_band=bool(opt_bool(p, "paid_out_of_band")))
    return state.invoice_json(inv)


@route("POST", r"/v1/invoices/(?P<id>in_[^/]+)")
def update_invoice(state: StripeState, m: re.Match[str], p: Params) -> Json:
    """What may change after creation (see :meth:`StripeState.update_invoice`); the path
    names an ``in_`` id, so it never overlaps ``/v1/invoices/create_preview``."""
    check_known(p, ["auto_advance", "due_date", "days_until_due", "metadata"])
    inv = state.invoice(m["id"])
    days = opt_int(p, "days_until_due")
    if days is not None and days < 0:
        raise bad_request("days_until_due must be zero or more.", param="days_until_due")
    state.update_invoice(
        inv,
        auto_advance=opt_bool(p, "auto_advance"),
        due_date=opt_int(p, "due_date"),
        days_until_due=days,
        metadata=metadata_update(inv.metadata, p) if "metadata" in p else None,
    )
    return state.invoice_json(inv)


@route("POST", r"/v1/invoices/(?P<id>[^/]+)/void")
def void_invoice(state: StripeState, m: re.Match[str], p: Params) -> Json:
    check_known(p, [])
    inv = state.invoice(m["id"])
    state.void(inv)
    return state.invoice_json(inv)


@route("DELETE", r"/v1/invoices/(?P<id>[^/]+)")
def delete_invoice(state: StripeState, m: re.Match[str], p: Params) -> Json:
    check_known(p, [])
    if "expand" in p:  # refused before deleting: nothing of a deleted invoice expands
        raise bad_request("This property cannot be expanded (expand).", param="expand")
    inv = state.invoice(m["id"])
    state.delete_draft(inv)
    return {"id": inv.id, "object": "invoice", "deleted": True}


@route("GET", r"/v1/invoices/(?P<id>[^/]+)/lines")
def invoice_lines(state: StripeState, m: re.Match[str], p: Params) -> Json:
    check_known(p, ["limit", "starting_after", "ending_before"])
    inv = state.invoice(m["id"])
    return paginate([state.line_json(li) for li in inv.lines], p, f"/v1/invoices/{inv.id}/lines")


@route("POST", r"/v1/invoices/create_preview")
def create_preview(state: StripeState, _m: re.Match[str], p: Params) -> Json:
    check_known(p, ["customer", "subscription", "subscription_details", "preview_mode"])
    sub_id = opt_str(p, "subscription")
    cust_id = opt_str(p, "customer")
    if sub_id is None:
        # Since 2025-03-31.basil a customer-wide "next invoice" preview is gone; previews
        # of new subscriptions or bare invoice items are not modelled by the sandbox.
        raise bad_request(
            "You must pass `subscription` to preview an invoice (the Stripe sandbox does not "
            "model previews of new subscriptions, schedules or bare invoice items).",
            param="subscription",
        )
    s = state.subscription(sub_id, param="subscription")
    customer = state.customer(cust_id, param="customer") if cust_id else state.customer(s.customer)
    if s.customer != customer.id:
        raise bad_request(
            "The subscription does not belong to this customer.", param="subscription"
        )
    details = opt_dict(p, "subscription_details") or {}
    check_known(details, ["items", "proration_date", "proration_behavior"], "subscription_details")
    # Apply the change for real inside an undo point, render the invoice, undo it all.
    snap = state.snapshot()
    state.silent = True
    try:
        return _preview(state, s, customer, details)
    finally:
        state.silent = False
        state.restore(snap)


def _preview(state: StripeState, s: Subscription, customer: Customer, details: Params) -> Json:
    preview_id = "upcoming_" + state.new_id("in")
    behavior = (
        opt_enum(
            details,
            "proration_behavior",
            PRORATION_BEHAVIORS,
            "subscription_details[proration_behavior]",
        )
        or "create_prorations"
    )
    proration_date = opt_int(details, "proration_date", "subscription_details[proration_date]")
    raw_items = opt_list(details, "items", "subscription_details[items]")
    if raw_items or proration_date is not None:
        changes = parse_items(raw_items or [], for_update=True, param="subscription_details[items]")
        # Build the prorations but leave them pending: the preview shows them.
        state.update_subscription(
            s,
            changes=changes,
            proration_behavior="create_prorations" if behavior != "none" else "none",
            proration_date=proration_date,
            payment_behavior="allow_incomplete",
        )
    if behavior == "always_invoice":
        inv = state.preview_pending(customer, s, preview_id)
    else:
        if s.status == "canceled":
            raise bad_request(
                "No upcoming invoices for a canceled subscription.", code="invoice_upcoming_none"
            )
        inv = state.preview_renewal(s, preview_id)
    if proration_date is not None:
        inv.subscription_proration_date = proration_date
    return state.invoice_json(inv, preview=True)


# --- invoice items and invoice payments ---------------------------------------------------


@route("POST", r"/v1/invoiceitems")
def create_invoice_item(state: StripeState, _m: re.Match[str], p: Params) -> Json:
    """A one-off charge: ``amount``, or ``unit_amount_decimal`` times ``quantity`` (whole
    minor units only in the sandbox); on the draft ``invoice`` given, else pending."""
    check_known(
        p,
        [
            "customer",
            "invoice",
            "subscription",
            "currency",
            "amount",
            "unit_amount_decimal",
            "quantity",
            "description",
            "period",
            "metadata",
        ],
    )
    customer = state.customer(req_str(p, "customer"), param="customer")
    invoice_id = opt_str(p, "invoice")
    inv = state.invoice(invoice_id, param="invoice") if invoice_id else None
    sub_id = opt_str(p, "subscription")
    s = state.subscription(sub_id, param="subscription") if sub_id else None
    if s is not None and s.customer != customer.id:
        raise bad_request(
            f"The subscription {s.id} does not belong to customer {customer.id}.",
            param="subscription",
        )
    currency = opt_str(p, "currency") or (inv.currency if inv else None) or customer.currency
    if currency is None:
        raise bad_request("Missing required param: currency.", param="currency")
    quantity = opt_int(p, "quantity")
    if quantity is not None and quantity < 0:
        raise bad_request("Invalid quantity: must be non-negative", param="quantity")
    amount = opt_int(p, "amount")
    unit = opt_str(p, "unit_amount_decimal")
    if (amount is None) == (unit is None):
        raise bad_request(
            "You must specify exactly one of amount or unit_amount_decimal.", param="amount"
        )
    if unit is not None:
        if not re.fullmatch(r"-?\d+(?:\.0+)?", unit):
            raise bad_request(
                "The Stripe sandbox only models whole minor units in unit_amount_decimal.",
                param="unit_amount_decimal",
            )
        amount = int(float(unit)) * (1 if quantity is None else quantity)
    period = opt_dict(p, "period")
    start = end = state.now
    if period is not None:
        check_known(period, ["start", "end"], "period")
        start = opt_int(period, "start", "period[start]") or state.now
        end = opt_int(period, "end", "period[end]") or start
        if end < start:
            raise bad_request(
                "The period end must be greater than or equal to the start.", param="period[end]"
            )
    ii = state.add_invoice_item(
        customer=customer,
        currency=currency,
        amount=amount or 0,
        quantity=1 if quantity is None else quantity,
        description=opt_str(p, "description") or "Invoice item",
        period=(start, end),
        subscription=s,
        invoice=inv,
        metadata=metadata_of(p),
    )
    return state.invoice_item_json(ii)


@route("GET", r"/v1/invoiceitems/(?P<id>[^/]+)")
def get_invoice_item(state: StripeState, m: re.Match[str], p: Params) -> Json:
    check_known(p, [])
    return state.invoice_item_json(state.invoice_item(m["id"]))


@route("GET", r"/v1/invoiceitems")
def list_invoice_items(state: StripeState, _m: re.Match[str], p: Params) -> Json:
    check_known(
        p, ["customer", "pending", "invoice", "limit", "starting_after", "ending_before", "created"]
    )
    customer = opt_str(p, "customer")
    pending = opt_bool(p, "pending")
    invoice = opt_str(p, "invoice")
    created = created_filter(p)
    items = [
        ii
        for ii in newest_first(list(state.books.invoice_items.values()))
        if (customer is None or ii.customer == customer)
        and (pending is None or (ii.invoice is None) == pending)
        and (invoice is None or ii.invoice == invoice)
        and created(ii.date)
    ]
    return paginate([state.invoice_item_json(ii) for ii in items], p, "/v1/invoiceitems")


@route("GET", r"/v1/invoice_payments")
def list_invoice_payments(state: StripeState, _m: re.Match[str], p: Params) -> Json:
    check_known(p, ["invoice", "limit", "starting_after", "ending_before", "status"])
    invoice = opt_str(p, "invoice")
    pays = [
        pay
        for inv in state.books.invoices.values()
        for pay in inv.payments
        if invoice is None or inv.id == invoice
    ]
    return paginate(
        [state.invoice_payment_json(x) for x in newest_first(pays)], p, "/v1/invoice_payments"
    )
