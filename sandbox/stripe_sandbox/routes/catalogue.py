"""Routes for ``/v1/products`` and ``/v1/prices``.

Part of ``stripe_sandbox``, a test and demo tool: never used with real money.
"""

from __future__ import annotations

import re

from stripe_sandbox.errors import bad_request, missing_param
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
    req_int,
    req_str,
)
from stripe_sandbox.objects import Json
from stripe_sandbox.routes.registry import metadata_of, newest_first, paginate, route
from stripe_sandbox.state import StripeState


@route("POST", r"/v1/products")
def create_product(state: StripeState, _m: re.Match[str], p: Params) -> Json:
    check_known(p, ["name", "metadata"])
    return state.product_json(state.create_product(req_str(p, "name"), metadata_of(p)))


@route("GET", r"/v1/products/(?P<id>[^/]+)")
def get_product(state: StripeState, m: re.Match[str], p: Params) -> Json:
    check_known(p, [])
    return state.product_json(state.product(m["id"]))


@route("POST", r"/v1/prices")
def create_price(state: StripeState, _m: re.Match[str], p: Params) -> Json:
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
        state.product(product_id, param="product")
    elif product_data is not None:
        check_known(product_data, ["name", "metadata"], "product_data")
        name = req_str(product_data, "name", "product_data[name]")
        product_id = state.create_product(name, metadata_update({}, product_data)).id
    else:
        raise missing_param("product")
    price = state.create_price(
        product=product_id,
        currency=currency,
        unit_amount=unit_amount,
        interval=interval,
        interval_count=count,
        metadata=metadata_of(p),
        nickname=opt_str(p, "nickname"),
        lookup_key=opt_str(p, "lookup_key"),
    )
    return state.price_json(price)


@route("GET", r"/v1/prices/(?P<id>[^/]+)")
def get_price(state: StripeState, m: re.Match[str], p: Params) -> Json:
    check_known(p, [])
    return state.price_json(state.price(m["id"]))


@route("GET", r"/v1/prices")
def list_prices(state: StripeState, _m: re.Match[str], p: Params) -> Json:
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
        for x in newest_first(list(state.books.prices.values()))
        if (product is None or x.product == product)
        and (active is None or x.active == active)
        and (currency is None or x.currency == currency)
        and (lookup_keys is None or x.lookup_key in lookup_keys)
    ]
    return paginate([state.price_json(x) for x in prices], p, "/v1/prices")


@route("POST", r"/v1/products/(?P<id>[^/]+)")
def update_product(state: StripeState, m: re.Match[str], p: Params) -> Json:
    """Rename, re-tag or archive (``active=false``) a product."""
    check_known(p, ["active", "name", "metadata"])
    product = state.product(m["id"])
    before = state.product_json(product)
    active = opt_bool(p, "active")
    if active is not None:
        product.active = active
    if "name" in p:
        product.name = req_str(p, "name")
    if "metadata" in p:
        product.metadata = metadata_update(product.metadata, p)
    after = state.product_json(product)
    state.emit("product.updated", after, {k: v for k, v in before.items() if after[k] != v})
    return after


@route("POST", r"/v1/prices/(?P<id>[^/]+)")
def update_price(state: StripeState, m: re.Match[str], p: Params) -> Json:
    """Archive (``active=false``) a price, or change its nickname or metadata; its amount
    and interval never change (Stripe: create a new price)."""
    check_known(p, ["active", "nickname", "metadata"])
    price = state.price(m["id"])
    before = state.price_json(price)
    active = opt_bool(p, "active")
    if active is not None:
        price.active = active
    if "nickname" in p:
        price.nickname = opt_str(p, "nickname") or None
    if "metadata" in p:
        price.metadata = metadata_update(price.metadata, p)
    after = state.price_json(price)
    state.emit("price.updated", after, {k: v for k, v in before.items() if after[k] != v})
    return after
