"""HTTP routing of the sandbox double: Stripe's v1 paths, parameters and shapes.

Part of ``stripe_sandbox``, a test and demo tool: never used with real money.
Each handler validates its parameters the way Stripe does (unknown parameter,
missing parameter, non-integer -> 400; unknown object in the path -> 404) and
delegates the billing logic to :mod:`stripe_sandbox.engine`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from stripe_sandbox.engine import (
    PAYMENT_BEHAVIORS,
    PRORATION_BEHAVIORS,
    Engine,
    ItemChange,
)
from stripe_sandbox.errors import StripeError, bad_request, missing_param
from stripe_sandbox.form import (
    Params,
    check_known,
    expand_list,
    metadata_update,
    opt_bool,
    opt_dict,
    opt_enum,
    opt_int,
    opt_list,
    opt_str,
    req_int,
    req_str,
)
from stripe_sandbox.objects import Customer, Json, Subscription

Handler = Callable[[Engine, "re.Match[str]", Params], Json]

_ROUTES: list[tuple[str, re.Pattern[str], Handler]] = []


def route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        _ROUTES.append((method, re.compile(pattern), fn))
        return fn

    return register


def dispatch(engine: Engine, method: str, path: str, params: Params) -> Json:
    """Run the handler for ``method path``; raise StripeError like Stripe would."""
    for m, pattern, fn in _ROUTES:
        match = pattern.fullmatch(path)
        if match is not None and m == method:
            obj = fn(engine, match, params)
            for exp in expand_list(params):
                _expand(engine, obj, exp.split("."))
            return obj
    raise StripeError(
        404,
        f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs "
        "or we can help at https://support.stripe.com/.",
    )


# --- helpers -------------------------------------------------------------------


def _metadata(params: Params) -> dict[str, str]:
    return metadata_update({}, params)


def _paginate(items: list[Json], params: Params, url: str) -> Json:
    """Stripe's list envelope: newest first, ``limit`` 1..100, ``starting_after``."""
    limit = opt_int(params, "limit")
    if limit is None:
        limit = 10
    if not 1 <= limit <= 100:
        raise bad_request(
            "Invalid limit: must be at least 1 and less than or equal to 100", param="limit"
        )
    after = opt_str(params, "starting_after")
    before = opt_str(params, "ending_before")
    ids = [obj["id"] for obj in items]
    if after is not None:
        if after not in ids:
            raise bad_request(
                f"No such object: '{after}'", param="starting_after", code="resource_missing"
            )
        items = items[ids.index(after) + 1 :]
        page = items[:limit]
    elif before is not None:
        if before not in ids:
            raise bad_request(
                f"No such object: '{before}'", param="ending_before", code="resource_missing"
            )
        items = items[: ids.index(before)]
        page = items[-limit:]
    else:
        page = items[:limit]
    return {
        "object": "list",
        "data": page,
        "has_more": len(items) > len(page),
        "url": url,
    }


def _newest_first(objs: list[Any]) -> list[Any]:
    """Stripe lists newest first; ties (same second) by creation order."""
    indexed = list(enumerate(objs))
    indexed.sort(key=lambda p: (getattr(p[1], "created", 0), p[0]), reverse=True)
    return [o for _, o in indexed]


def _expand(engine: Engine, node: Any, parts: list[str]) -> None:
    if not parts or not isinstance(node, dict):
        return
    key, rest = parts[0], parts[1:]
    if key == "payments" and node.get("object") == "invoice" and not rest:
        inv = engine.invoice(node["id"])
        data = [engine.invoice_payment_json(p) for p in inv.payments]
        node["payments"] = {
            "object": "list",
            "data": data,
            "has_more": False,
            "url": f"/v1/invoice_payments?invoice={inv.id}",
        }
        return
    if key not in node:
        raise bad_request(f"This property cannot be expanded ({key}).", param="expand")
    val = node[key]
    if isinstance(val, str):
        val = _resolve(engine, val)
        node[key] = val
    if isinstance(val, list):
        for elem in val:
            _expand(engine, elem, rest)
    else:
        _expand(engine, val, rest)


def _resolve(engine: Engine, obj_id: str) -> Any:
    b = engine.books
    prefix = obj_id.split("_", 1)[0]
    if prefix == "cus" and obj_id in b.customers:
        return engine.customer_json(b.customers[obj_id])
    if prefix == "sub" and obj_id in b.subscriptions:
        return engine.subscription_json(b.subscriptions[obj_id])
    if prefix == "si" and obj_id in b.items:
        return engine.item_json(b.items[obj_id])
    if prefix == "in" and obj_id in b.invoices:
        return engine.invoice_json(b.invoices[obj_id])
    if prefix == "ii" and obj_id in b.invoice_items:
        return engine.invoice_item_json(b.invoice_items[obj_id])
    if prefix == "price" and obj_id in b.prices:
        return engine.price_json(b.prices[obj_id])
    if prefix == "prod" and obj_id in b.products:
        return engine.product_json(b.products[obj_id])
    return obj_id


def _created_filter(params: Params) -> Callable[[int], bool]:
    raw = params.get("created")
    if raw is None:
        return lambda _t: True
    if isinstance(raw, str):
        exact = req_int(params, "created")
        return lambda t: t == exact
    bounds = opt_dict(params, "created") or {}
    check_known(bounds, ["gt", "gte", "lt", "lte"], "created")
    gt = opt_int(bounds, "gt", "created[gt]")
    gte = opt_int(bounds, "gte", "created[gte]")
    lt = opt_int(bounds, "lt", "created[lt]")
    lte = opt_int(bounds, "lte", "created[lte]")
    return lambda t: (
        (gt is None or t > gt)
        and (gte is None or t >= gte)
        and (lt is None or t < lt)
        and (lte is None or t <= lte)
    )


# --- customers ---------------------------------------------------------------------


@route("POST", r"/v1/customers")
def create_customer(e: Engine, _m: re.Match[str], p: Params) -> Json:
    check_known(p, ["email", "name", "metadata", "test_clock", "description"])
    clock = opt_str(p, "test_clock")
    return e.customer_json(
        e.create_customer(
            email=opt_str(p, "email"),
            name=opt_str(p, "name"),
            metadata=_metadata(p),
            test_clock=clock,
            description=opt_str(p, "description"),
        )
    )


@route("GET", r"/v1/customers/(?P<id>[^/]+)")
def get_customer(e: Engine, m: re.Match[str], p: Params) -> Json:
    check_known(p, [])
    return e.customer_json(e.customer(m["id"]))


@route("POST", r"/v1/customers/(?P<id>[^/]+)")
def update_customer(e: Engine, m: re.Match[str], p: Params) -> Json:
    check_known(p, ["email", "name", "metadata", "description"])
    c = e.customer(m["id"])
    before = e.customer_json(c)
    if "email" in p:
        c.email = opt_str(p, "email") or None
    if "name" in p:
        c.name = opt_str(p, "name") or None
    if "description" in p:
        c.description = opt_str(p, "description") or None
    c.metadata = metadata_update(c.metadata, p)
    after = e.customer_json(c)
    e.emit("customer.updated", after, {k: v for k, v in before.items() if after[k] != v})
    return after


@route("GET", r"/v1/customers")
def list_customers(e: Engine, _m: re.Match[str], p: Params) -> Json:
    check_known(p, ["limit", "starting_after", "ending_before", "email", "created"])
    email = opt_str(p, "email")
    created = _created_filter(p)
    custs = [
        c
        for c in _newest_first(list(e.books.customers.values()))
        if (email is None or c.email == email) and created(c.created)
    ]
    return _paginate([e.customer_json(c) for c in custs], p, "/v1/customers")


@route("POST", r"/v1/customers/(?P<id>[^/]+)/balance_transactions")
def create_balance_transaction(e: Engine, m: re.Match[str], p: Params) -> Json:
    check_known(p, ["amount", "currency", "description", "metadata"])
    c = e.customer(m["id"])
    amount = req_int(p, "amount")
    currency = req_str(p, "currency").lower()
    txn = e.add_balance_transaction(
        c,
        amount=amount,
        currency=currency,
        type_="adjustment",
        description=opt_str(p, "description"),
        metadata=_metadata(p),
    )
    return e.balance_transaction_json(txn)


@route("GET", r"/v1/customers/(?P<id>[^/]+)/balance_transactions")
def list_balance_transactions(e: Engine, m: re.Match[str], p: Params) -> Json:
    check_known(p, ["limit", "starting_after", "ending_before", "created", "invoice"])
    c = e.customer(m["id"])
    invoice = opt_str(p, "invoice")
    created = _created_filter(p)
    txns = [
        t
        for t in _newest_first(list(e.books.balance_transactions.values()))
        if t.customer == c.id and (invoice is None or t.invoice == invoice) and created(t.created)
    ]
    return _paginate(
        [e.balance_transaction_json(t) for t in txns],
        p,
        f"/v1/customers/{c.id}/balance_transactions",
    )


@route("GET", r"/v1/customers/(?P<id>[^/]+)/balance_transactions/(?P<txn>[^/]+)")
def get_balance_transaction(e: Engine, m: re.Match[str], p: Params) -> Json:
    check_known(p, [])
    c = e.customer(m["id"])
    txn = e.books.balance_transactions.get(m["txn"])
    if txn is None or txn.customer != c.id:
        raise StripeError(
            404,
            f"No such customer balance transaction: '{m['txn']}'",
            code="resource_missing",
            param="id",
        )
    return e.balance_transaction_json(txn)


# --- products and prices ----------------------------------------------------------------


@route("POST", r"/v1/products")
def create_product(e: Engine, _m: re.Match[str], p: Params) -> Json:
    check_known(p, ["name", "metadata"])
    return e.product_json(e.create_product(req_str(p, "name"), _metadata(p)))


@route("GET", r"/v1/products/(?P<id>[^/]+)")
def get_product(e: Engine, m: re.Match[str], p: Params) -> Json:
    check_known(p, [])
    return e.product_json(e.product(m["id"]))


@route("POST", r"/v1/prices")
def create_price(e: Engine, _m: re.Match[str], p: Params) -> Json:
    check_known(
        p,
        [
            "currency",
            "unit_amount",
            "recurring",
            "product",
            "product_data",
            "metadata",
            "nickname",
            "lookup_key",
        ],
    )
    currency = req_str(p, "currency").lower()
    unit_amount = req_int(p, "unit_amount")
    if unit_amount < 0:
        raise bad_request("This value must be greater than or equal to 0.", param="unit_amount")
    recurring = opt_dict(p, "recurring")
    if recurring is None:
        raise bad_request(
            "The Stripe sandbox only models recurring prices: pass recurring[interval].",
            param="recurring",
        )
    check_known(recurring, ["interval", "interval_count", "usage_type"], "recurring")
    interval = opt_enum(
        recurring, "interval", ["day", "week", "month", "year"], "recurring[interval]"
    )
    if interval is None:
        raise missing_param("recurring[interval]")
    if opt_enum(recurring, "usage_type", ["licensed"], "recurring[usage_type]") is None:
        pass
    count = opt_int(recurring, "interval_count", "recurring[interval_count]") or 1
    limit = {"day": 365, "week": 52, "month": 12, "year": 1}[interval]
    if not 1 <= count <= limit:
        raise bad_request(
            "Invalid interval_count: the maximum billing period is one year.",
            param="recurring[interval_count]",
        )
    product_id = opt_str(p, "product")
    product_data = opt_dict(p, "product_data")
    if product_id is not None and product_data is not None:
        raise bad_request(
            "You may only specify one of these parameters: product, product_data.", param="product"
        )
    if product_id is not None:
        e.product(product_id, param="product")
    elif product_data is not None:
        check_known(product_data, ["name", "metadata"], "product_data")
        name = req_str(product_data, "name", "product_data[name]")
        product_id = e.create_product(name, metadata_update({}, product_data)).id
    else:
        raise missing_param("product")
    price = e.create_price(
        product=product_id,
        currency=currency,
        unit_amount=unit_amount,
        interval=interval,
        interval_count=count,
        metadata=_metadata(p),
        nickname=opt_str(p, "nickname"),
        lookup_key=opt_str(p, "lookup_key"),
    )
    return e.price_json(price)


@route("GET", r"/v1/prices/(?P<id>[^/]+)")
def get_price(e: Engine, m: re.Match[str], p: Params) -> Json:
    check_known(p, [])
    return e.price_json(e.price(m["id"]))


@route("GET", r"/v1/prices")
def list_prices(e: Engine, _m: re.Match[str], p: Params) -> Json:
    check_known(
        p,
        [
            "limit",
            "starting_after",
            "ending_before",
            "product",
            "active",
            "currency",
            "lookup_keys",
        ],
    )
    product = opt_str(p, "product")
    active = opt_bool(p, "active")
    currency = opt_str(p, "currency")
    lookup_keys = opt_list(p, "lookup_keys")
    prices = [
        x
        for x in _newest_first(list(e.books.prices.values()))
        if (product is None or x.product == product)
        and (active is None or x.active == active)
        and (currency is None or x.currency == currency)
        and (lookup_keys is None or x.lookup_key in lookup_keys)
    ]
    return _paginate([e.price_json(x) for x in prices], p, "/v1/prices")


# --- subscriptions ---------------------------------------------------------------------


def _parse_items(raw: list[Any], *, for_update: bool, param: str = "items") -> list[ItemChange]:
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
def create_subscription(e: Engine, _m: re.Match[str], p: Params) -> Json:
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
    customer = e.customer(req_str(p, "customer"), param="customer")
    raw_items = opt_list(p, "items")
    if not raw_items:
        raise missing_param("items")
    changes = _parse_items(raw_items, for_update=False)
    items = []
    seen: set[str] = set()
    for ch in changes:
        if ch.price is None:
            raise missing_param(f"{ch.param}[price]")
        price = e.price(ch.price, param=f"{ch.param}[price]")
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
    s = e.create_subscription(
        customer=customer,
        items=items,
        billing_mode=billing_mode,
        metadata=_metadata(p),
        payment_behavior=payment_behavior,
    )
    return e.subscription_json(s)


@route("GET", r"/v1/subscriptions/(?P<id>[^/]+)")
def get_subscription(e: Engine, m: re.Match[str], p: Params) -> Json:
    check_known(p, [])
    return e.subscription_json(e.subscription(m["id"]))


@route("GET", r"/v1/subscriptions")
def list_subscriptions(e: Engine, _m: re.Match[str], p: Params) -> Json:
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
    created = _created_filter(p)

    def keep(s_status: str) -> bool:
        if status is None:
            return s_status not in ("canceled", "incomplete_expired")
        if status == "all":
            return True
        if status == "ended":
            return s_status in ("canceled", "incomplete_expired")
        return s_status == status

    subs = [
        s
        for s in _newest_first(list(e.books.subscriptions.values()))
        if keep(s.status)
        and (customer is None or s.customer == customer)
        and (price is None or any(e.books.items[i].price == price for i in s.items))
        and created(s.created)
    ]
    return _paginate([e.subscription_json(s) for s in subs], p, "/v1/subscriptions")


def _update_common(p: Params) -> tuple[str, int | None, str]:
    behavior = opt_enum(p, "proration_behavior", PRORATION_BEHAVIORS) or "create_prorations"
    proration_date = opt_int(p, "proration_date")
    payment_behavior = opt_enum(p, "payment_behavior", PAYMENT_BEHAVIORS) or "allow_incomplete"
    return behavior, proration_date, payment_behavior


@route("POST", r"/v1/subscriptions/(?P<id>[^/]+)")
def update_subscription(e: Engine, m: re.Match[str], p: Params) -> Json:
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
    s = e.subscription(m["id"])
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
    changes = _parse_items(opt_list(p, "items") or [], for_update=True)
    metadata = metadata_update(s.metadata, p) if "metadata" in p else None
    e.update_subscription(
        s,
        changes=changes,
        proration_behavior=behavior,
        proration_date=proration_date,
        payment_behavior=payment_behavior,
        metadata=metadata,
        cancel_at_period_end=opt_bool(p, "cancel_at_period_end"),
    )
    return e.subscription_json(s)


@route("DELETE", r"/v1/subscriptions/(?P<id>[^/]+)")
def cancel_subscription(e: Engine, m: re.Match[str], p: Params) -> Json:
    check_known(p, ["invoice_now", "prorate", "cancellation_details"])
    s = e.subscription(m["id"])
    e.cancel_subscription(
        s,
        prorate_=bool(opt_bool(p, "prorate")),
        invoice_now=bool(opt_bool(p, "invoice_now")),
    )
    return e.subscription_json(s)


# --- subscription items ------------------------------------------------------------------


@route("GET", r"/v1/subscription_items/(?P<id>[^/]+)")
def get_item(e: Engine, m: re.Match[str], p: Params) -> Json:
    check_known(p, [])
    si = e.item(m["id"])
    if si.id not in e.books.subscriptions[si.subscription].items:
        raise StripeError(
            404, f"No such subscription_item: '{si.id}'", code="resource_missing", param="id"
        )
    return e.item_json(si)


@route("POST", r"/v1/subscription_items/(?P<id>[^/]+)")
def update_item(e: Engine, m: re.Match[str], p: Params) -> Json:
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
    si = e.item(m["id"])
    s = e.books.subscriptions[si.subscription]
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
    e.update_subscription(
        s,
        changes=[change],
        proration_behavior=behavior,
        proration_date=proration_date,
        payment_behavior=payment_behavior,
    )
    return e.item_json(si)


@route("GET", r"/v1/subscription_items")
def list_items(e: Engine, _m: re.Match[str], p: Params) -> Json:
    check_known(p, ["subscription", "limit", "starting_after", "ending_before"])
    s = e.subscription(req_str(p, "subscription"), param="subscription")
    items = [e.item_json(e.books.items[i]) for i in s.items]
    return _paginate(items, p, "/v1/subscription_items")


# --- invoices ---------------------------------------------------------------------------


@route("POST", r"/v1/invoices")
def create_invoice(e: Engine, _m: re.Match[str], p: Params) -> Json:
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
    customer = e.customer(req_str(p, "customer"), param="customer")
    sub_id = opt_str(p, "subscription")
    s = e.subscription(sub_id, param="subscription") if sub_id else None
    if s is not None and s.customer != customer.id:
        raise bad_request(
            f"The subscription {s.id} does not belong to customer {customer.id}.",
            param="subscription",
        )
    behavior = opt_enum(p, "pending_invoice_items_behavior", ["include", "exclude"]) or "exclude"
    collection = opt_enum(p, "collection_method", ["charge_automatically", "send_invoice"])
    auto = opt_bool(p, "auto_advance")
    inv = e.create_invoice(
        customer=customer,
        subscription=s,
        include_pending=behavior == "include",
        auto_advance=bool(auto),
        collection_method=collection or "charge_automatically",
        metadata=_metadata(p),
    )
    return e.invoice_json(inv)


@route("GET", r"/v1/invoices/upcoming(?:/lines)?")
def upcoming_removed(_e: Engine, m: re.Match[str], _p: Params) -> Json:
    """Removed from the API (use ``POST /v1/invoices/create_preview``)."""
    raise StripeError(
        404,
        f"Unrecognized request URL (GET: {m.group(0)}). Please see https://stripe.com/docs "
        "or we can help at https://support.stripe.com/.",
    )


@route("GET", r"/v1/invoices/(?P<id>[^/]+)")
def get_invoice(e: Engine, m: re.Match[str], p: Params) -> Json:
    check_known(p, [])
    return e.invoice_json(e.invoice(m["id"]))


@route("GET", r"/v1/invoices")
def list_invoices(e: Engine, _m: re.Match[str], p: Params) -> Json:
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
    created = _created_filter(p)
    invs = [
        i
        for i in _newest_first(list(e.books.invoices.values()))
        if (customer is None or i.customer == customer)
        and (sub is None or i.subscription == sub)
        and (status is None or i.status == status)
        and created(i.created)
    ]
    return _paginate([e.invoice_json(i) for i in invs], p, "/v1/invoices")


@route("POST", r"/v1/invoices/(?P<id>[^/]+)/finalize")
def finalize_invoice(e: Engine, m: re.Match[str], p: Params) -> Json:
    check_known(p, ["auto_advance"])
    inv = e.invoice(m["id"])
    auto = opt_bool(p, "auto_advance")
    if auto is not None:
        inv.auto_advance = auto
    e.finalize(inv, attempt_payment=True)
    return e.invoice_json(inv)


@route("POST", r"/v1/invoices/(?P<id>[^/]+)/pay")
def pay_invoice(e: Engine, m: re.Match[str], p: Params) -> Json:
    check_known(p, ["paid_out_of_band", "off_session", "payment_method"])
    inv = e.invoice(m["id"])
    e.pay(inv, paid_out_of_band=bool(opt_bool(p, "paid_out_of_band")))
    return e.invoice_json(inv)


@route("POST", r"/v1/invoices/(?P<id>[^/]+)/void")
def void_invoice(e: Engine, m: re.Match[str], p: Params) -> Json:
    check_known(p, [])
    inv = e.invoice(m["id"])
    e.void(inv)
    return e.invoice_json(inv)


@route("GET", r"/v1/invoices/(?P<id>[^/]+)/lines")
def invoice_lines(e: Engine, m: re.Match[str], p: Params) -> Json:
    check_known(p, ["limit", "starting_after", "ending_before"])
    inv = e.invoice(m["id"])
    return _paginate([e.line_json(li) for li in inv.lines], p, f"/v1/invoices/{inv.id}/lines")


@route("POST", r"/v1/invoices/create_preview")
def create_preview(e: Engine, _m: re.Match[str], p: Params) -> Json:
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
    s = e.subscription(sub_id, param="subscription")
    customer = e.customer(cust_id, param="customer") if cust_id else e.customer(s.customer)
    if s.customer != customer.id:
        raise bad_request(
            "The subscription does not belong to this customer.", param="subscription"
        )
    details = opt_dict(p, "subscription_details") or {}
    check_known(details, ["items", "proration_date", "proration_behavior"], "subscription_details")
    # Apply the change for real inside an undo point, render the invoice, undo it all.
    snap = e.snapshot()
    e.silent = True
    try:
        return _preview(e, s, customer, details)
    finally:
        e.silent = False
        e.restore(snap)


def _preview(e: Engine, s: Subscription, customer: Customer, details: Params) -> Json:
    preview_id = "upcoming_" + e.new_id("in")
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
        changes = _parse_items(
            raw_items or [], for_update=True, param="subscription_details[items]"
        )
        # Build the prorations but leave them pending: the preview shows them.
        e.update_subscription(
            s,
            changes=changes,
            proration_behavior="create_prorations" if behavior != "none" else "none",
            proration_date=proration_date,
            payment_behavior="allow_incomplete",
        )
    if behavior == "always_invoice":
        inv = e.preview_pending(customer, s, preview_id)
    else:
        if s.status == "canceled":
            raise bad_request(
                "No upcoming invoices for a canceled subscription.", code="invoice_upcoming_none"
            )
        inv = e.preview_renewal(s, preview_id)
    if proration_date is not None:
        inv.subscription_proration_date = proration_date
    return e.invoice_json(inv, preview=True)


# --- invoice items and invoice payments ---------------------------------------------------


@route("GET", r"/v1/invoiceitems/(?P<id>[^/]+)")
def get_invoice_item(e: Engine, m: re.Match[str], p: Params) -> Json:
    check_known(p, [])
    return e.invoice_item_json(e.invoice_item(m["id"]))


@route("GET", r"/v1/invoiceitems")
def list_invoice_items(e: Engine, _m: re.Match[str], p: Params) -> Json:
    check_known(
        p, ["customer", "pending", "invoice", "limit", "starting_after", "ending_before", "created"]
    )
    customer = opt_str(p, "customer")
    pending = opt_bool(p, "pending")
    invoice = opt_str(p, "invoice")
    created = _created_filter(p)
    items = [
        ii
        for ii in _newest_first(list(e.books.invoice_items.values()))
        if (customer is None or ii.customer == customer)
        and (pending is None or (ii.invoice is None) == pending)
        and (invoice is None or ii.invoice == invoice)
        and created(ii.date)
    ]
    return _paginate([e.invoice_item_json(ii) for ii in items], p, "/v1/invoiceitems")


@route("GET", r"/v1/invoice_payments")
def list_invoice_payments(e: Engine, _m: re.Match[str], p: Params) -> Json:
    check_known(p, ["invoice", "limit", "starting_after", "ending_before", "status"])
    invoice = opt_str(p, "invoice")
    pays = [
        pay
        for inv in e.books.invoices.values()
        for pay in inv.payments
        if invoice is None or inv.id == invoice
    ]
    return _paginate(
        [e.invoice_payment_json(x) for x in _newest_first(pays)], p, "/v1/invoice_payments"
    )


# --- events -----------------------------------------------------------------------------


@route("GET", r"/v1/events/(?P<id>[^/]+)")
def get_event(e: Engine, m: re.Match[str], p: Params) -> Json:
    check_known(p, [])
    for evt in e.events:
        if evt.id == m["id"]:
            return e.event_json(evt)
    raise StripeError(404, f"No such event: '{m['id']}'", code="resource_missing", param="id")


@route("GET", r"/v1/events")
def list_events(e: Engine, _m: re.Match[str], p: Params) -> Json:
    check_known(
        p,
        [
            "type",
            "types",
            "created",
            "limit",
            "starting_after",
            "ending_before",
            "delivery_success",
        ],
    )
    type_ = opt_str(p, "type")
    types = opt_list(p, "types")
    created = _created_filter(p)

    def type_ok(t: str) -> bool:
        if type_ is not None:
            if type_.endswith(".*"):
                return t.startswith(type_[:-1])
            return t == type_
        return types is None or t in types

    evts = [x for x in reversed(e.events) if type_ok(x.type) and created(x.created)]
    return _paginate([e.event_json(x) for x in evts], p, "/v1/events")
