"""Routes for ``/v1/subscriptions`` and ``/v1/subscription_items``.

Part of ``stripe_sandbox``, a test and demo tool: never used with real money.
"""

from __future__ import annotations

import re
import weakref
from typing import Any

from stripe_sandbox.errors import StripeError, bad_request, missing_param
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
from stripe_sandbox.objects import Json, Subscription
from stripe_sandbox.routes.registry import (
    created_filter,
    metadata_of,
    newest_first,
    paginate,
    paginate_ordered,
    route,
)
from stripe_sandbox.state import PAYMENT_BEHAVIORS, PRORATION_BEHAVIORS, ItemChange, StripeState


def parse_items(raw: list[Any], *, for_update: bool, param: str = "items") -> list[ItemChange]:
    changes: list[ItemChange] = []
    for i, entry in enumerate(raw):
        name = f"{param}[{i}]"
        if not isinstance(entry, dict):
            raise bad_request("Invalid object", param=name)
        allowed = ["price", "quantity", "metadata"]
        if for_update:
            allowed += ["id", "deleted", "clear_usage"]
        check_known(entry, allowed, name)
        quantity = opt_int(entry, "quantity", f"{name}[quantity]")
        if quantity is not None and quantity < 0:
            raise bad_request("Invalid quantity: must be non-negative", param=f"{name}[quantity]")
        meta = opt_dict(entry, "metadata", f"{name}[metadata]")
        changes.append(
            ItemChange(
                id=opt_str(entry, "id", f"{name}[id]"),
                price=opt_str(entry, "price", f"{name}[price]"),
                quantity=quantity,
                deleted=bool(opt_bool(entry, "deleted", f"{name}[deleted]")),
                metadata=meta,
                param=name,
            )
        )
    return changes


@route("POST", r"/v1/subscriptions")
def create_subscription(state: StripeState, _m: re.Match[str], p: Params) -> Json:
    check_known(
        p,
        [
            "customer",
            "items",
            "billing_mode",
            "metadata",
            "proration_behavior",
            "payment_behavior",
            "collection_method",
            "off_session",
        ],
    )
    customer = state.customer(req_str(p, "customer"), param="customer")
    raw_items = opt_list(p, "items")
    if not raw_items:
        raise missing_param("items")
    changes = parse_items(raw_items, for_update=False)
    items = []
    seen: set[str] = set()
    for ch in changes:
        if ch.price is None:
            raise missing_param(f"{ch.param}[price]")
        price = state.price(ch.price, param=f"{ch.param}[price]")
        if price.id in seen:
            raise bad_request(
                f"Cannot add multiple subscription items with the same plan: {price.id}",
                param=f"{ch.param}[price]",
            )
        seen.add(price.id)
        items.append(
            (
                price,
                1 if ch.quantity is None else ch.quantity,
                {k: str(v) for k, v in (ch.metadata or {}).items()},
            )
        )
    mode = opt_dict(p, "billing_mode")
    billing_mode = "flexible"
    if mode is not None:
        check_known(mode, ["type", "flexible"], "billing_mode")
        billing_mode = (
            opt_enum(mode, "type", ["classic", "flexible"], "billing_mode[type]") or "flexible"
        )
    opt_enum(p, "proration_behavior", PRORATION_BEHAVIORS)
    opt_enum(p, "collection_method", ["charge_automatically"])
    payment_behavior = opt_enum(p, "payment_behavior", PAYMENT_BEHAVIORS) or "allow_incomplete"
    s = state.create_subscription(
        customer=customer,
        items=items,
        billing_mode=billing_mode,
        metadata=metadata_of(p),
        payment_behavior=payment_behavior,
    )
    return state.subscription_json(s)


@route("GET", r"/v1/subscriptions/(?P<id>[^/]+)")
def get_subscription(state: StripeState, m: re.Match[str], p: Params) -> Json:
    check_known(p, [])
    return state.subscription_json(state.subscription(m["id"]))


@route("GET", r"/v1/subscriptions")
def list_subscriptions(state: StripeState, _m: re.Match[str], p: Params) -> Json:
    check_known(
        p, ["limit", "starting_after", "ending_before", "status", "customer", "price", "created"]
    )
    status = opt_enum(
        p,
        "status",
        [
            "active",
            "all",
            "canceled",
            "ended",
            "incomplete",
            "incomplete_expired",
            "past_due",
            "paused",
            "trialing",
            "unpaid",
        ],
    )
    customer = opt_str(p, "customer")
    price = opt_str(p, "price")
    created = created_filter(p)

    def keep(s_status: str) -> bool:
        if status is None:
            return s_status not in ("canceled", "incomplete_expired")
        if status == "all":
            return True
        if status == "ended":
            return s_status in ("canceled", "incomplete_expired")
        return s_status == status

    ordered, position = _newest_first(state)
    return paginate_ordered(
        ordered,
        position,
        lambda s: (
            keep(s.status)
            and (customer is None or s.customer == customer)
            and (price is None or any(state.books.items[i].price == price for i in s.items))
            and created(s.created)
        ),
        state.subscription_json,
        p,
        "/v1/subscriptions",
    )


_ORDER: weakref.WeakKeyDictionary[
    StripeState, tuple[int, Subscription | None, list[Subscription], dict[str, int]]
] = weakref.WeakKeyDictionary()


def _newest_first(state: StripeState) -> tuple[list[Subscription], dict[str, int]]:
    """Every subscription newest first and each one's index, kept until the table changes:
    subscriptions are only added at its end (or removed), and `created` never changes, so
    its size and last object tell whether the order still holds."""
    table = state.books.subscriptions
    last = table[next(reversed(table))] if table else None
    cached = _ORDER.get(state)
    if cached is None or cached[0] != len(table) or cached[1] is not last:
        ordered = newest_first(list(table.values()))
        cached = (len(table), last, ordered, {s.id: i for i, s in enumerate(ordered)})
        _ORDER[state] = cached
    return cached[2], cached[3]


def _update_common(p: Params) -> tuple[str, int | None, str]:
    behavior = opt_enum(p, "proration_behavior", PRORATION_BEHAVIORS) or "create_prorations"
    proration_date = opt_int(p, "proration_date")
    payment_behavior = opt_enum(p, "payment_behavior", PAYMENT_BEHAVIORS) or "allow_incomplete"
    return behavior, proration_date, payment_behavior


@route("POST", r"/v1/subscriptions/(?P<id>[^/]+)")
def update_subscription(state: StripeState, m: re.Match[str], p: Params) -> Json:
    check_known(
        p,
        [
            "items",
            "proration_behavior",
            "proration_date",
            "payment_behavior",
            "billing_cycle_anchor",
            "metadata",
            "cancel_at_period_end",
        ],
    )
    s = state.subscription(m["id"])
    anchor = p.get("billing_cycle_anchor")
    if anchor is not None:
        if not isinstance(anchor, dict):
            raise bad_request(
                "Invalid object: billing_cycle_anchor must be an object such as "
                "{type: 'unchanged'}.",
                param="billing_cycle_anchor",
            )
        check_known(anchor, ["type"], "billing_cycle_anchor")
        kind = opt_enum(anchor, "type", ["now", "unchanged"], "billing_cycle_anchor[type]")
        if kind == "now":
            raise bad_request(
                "The Stripe sandbox does not model resetting the billing cycle anchor.",
                param="billing_cycle_anchor[type]",
            )
    behavior, proration_date, payment_behavior = _update_common(p)
    changes = parse_items(opt_list(p, "items") or [], for_update=True)
    metadata = metadata_update(s.metadata, p) if "metadata" in p else None
    state.update_subscription(
        s,
        changes=changes,
        proration_behavior=behavior,
        proration_date=proration_date,
        payment_behavior=payment_behavior,
        metadata=metadata,
        cancel_at_period_end=opt_bool(p, "cancel_at_period_end"),
    )
    return state.subscription_json(s)


@route("DELETE", r"/v1/subscriptions/(?P<id>[^/]+)")
def cancel_subscription(state: StripeState, m: re.Match[str], p: Params) -> Json:
    check_known(p, ["invoice_now", "prorate", "cancellation_details"])
    s = state.subscription(m["id"])
    state.cancel_subscription(
        s,
        prorate_=bool(opt_bool(p, "prorate")),
        invoice_now=bool(opt_bool(p, "invoice_now")),
    )
    return state.subscription_json(s)


# --- subscription items ------------------------------------------------------------------


@route("GET", r"/v1/subscription_items/(?P<id>[^/]+)")
def get_item(state: StripeState, m: re.Match[str], p: Params) -> Json:
    check_known(p, [])
    si = state.item(m["id"])
    if si.id not in state.books.subscriptions[si.subscription].items:
        raise StripeError(
            404, f"No such subscription_item: '{si.id}'", code="resource_missing", param="id"
        )
    return state.item_json(si)


@route("POST", r"/v1/subscription_items/(?P<id>[^/]+)")
def update_item(state: StripeState, m: re.Match[str], p: Params) -> Json:
    check_known(
        p,
        [
            "quantity",
            "price",
            "metadata",
            "proration_behavior",
            "proration_date",
            "payment_behavior",
        ],
    )
    si = state.item(m["id"])
    s = state.books.subscriptions[si.subscription]
    quantity = opt_int(p, "quantity")
    if quantity is not None and quantity < 0:
        raise bad_request("Invalid quantity: must be non-negative", param="quantity")
    behavior, proration_date, payment_behavior = _update_common(p)
    change = ItemChange(
        id=si.id,
        price=opt_str(p, "price"),
        quantity=quantity,
        metadata=opt_dict(p, "metadata"),
        param="item",
    )
    state.update_subscription(
        s,
        changes=[change],
        proration_behavior=behavior,
        proration_date=proration_date,
        payment_behavior=payment_behavior,
    )
    return state.item_json(si)


@route("GET", r"/v1/subscription_items")
def list_items(state: StripeState, _m: re.Match[str], p: Params) -> Json:
    check_known(p, ["subscription", "limit", "starting_after", "ending_before"])
    s = state.subscription(req_str(p, "subscription"), param="subscription")
    items = [state.item_json(state.books.items[i]) for i in s.items]
    return paginate(items, p, "/v1/subscription_items")
