"""The route table and what every resource's routes share.

Part of ``stripe_sandbox``, a test and demo tool: never used with real money.
Resource modules register handlers with :func:`route`; :func:`dispatch` runs the
first one whose method and path pattern (``fullmatch``) fit, then applies
``expand[]``.  Also here: the list envelope (:func:`paginate`), Stripe's newest-first
order and the ``created`` filter.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from stripe_sandbox.errors import StripeError, bad_request
from stripe_sandbox.form import (
    Params,
    check_known,
    expand_list,
    metadata_update,
    opt_dict,
    opt_int,
    opt_str,
    req_int,
)
from stripe_sandbox.objects import Json
from stripe_sandbox.state import StripeState

Handler = Callable[[StripeState, "re.Match[str]", Params], Json]
T = TypeVar("T")

_ROUTES: list[tuple[str, re.Pattern[str], Handler]] = []


def route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        _ROUTES.append((method, re.compile(pattern), fn))
        return fn

    return register


def dispatch(state: StripeState, method: str, path: str, params: Params) -> Json:
    """Run the handler for ``method path``; raise StripeError like Stripe would."""
    for m, pattern, fn in _ROUTES:
        match = pattern.fullmatch(path)
        if match is not None and m == method:
            obj = fn(state, match, params)
            for exp in expand_list(params):
                _expand(state, obj, exp.split("."))
            return obj
    raise StripeError(
        404,
        f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs "
        "or we can help at https://support.stripe.com/.",
    )


# --- helpers -------------------------------------------------------------------


def metadata_of(params: Params) -> dict[str, str]:
    return metadata_update({}, params)


def paginate(items: list[Json], params: Params, url: str) -> Json:
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


def paginate_ordered(
    ordered: Sequence[T],
    position: Mapping[str, int],
    keep: Callable[[T], bool],
    render: Callable[[T], Json],
    params: Params,
    url: str,
) -> Json:
    """:func:`paginate` over objects already in list order, ``position`` giving each id's
    index: only the page is filtered and rendered, so a page costs its size, not the list's
    (listing 100,000 subscriptions 100 a page)."""
    limit = opt_int(params, "limit")
    if limit is None:
        limit = 10
    if not 1 <= limit <= 100:
        raise bad_request(
            "Invalid limit: must be at least 1 and less than or equal to 100", param="limit"
        )
    after = opt_str(params, "starting_after")
    before = opt_str(params, "ending_before")
    cursor, param = (after, "starting_after") if after is not None else (before, "ending_before")
    start = -1 if after is None and before is None else position.get(cursor or "")
    if start is None or (start >= 0 and not keep(ordered[start])):
        raise bad_request(f"No such object: '{cursor}'", param=param, code="resource_missing")
    step = -1 if after is None and before is not None else 1  # ending_before: backwards
    found: list[T] = []
    index = start + step
    while 0 <= index < len(ordered) and len(found) <= limit:
        if keep(ordered[index]):
            found.append(ordered[index])
        index += step
    page = found[:limit] if step == 1 else found[:limit][::-1]
    return {
        "object": "list",
        "data": [render(obj) for obj in page],
        "has_more": len(found) > limit,
        "url": url,
    }


def newest_first(objs: list[Any]) -> list[Any]:
    """Stripe lists newest first; ties (same second) by creation order."""
    indexed = list(enumerate(objs))
    indexed.sort(key=lambda p: (getattr(p[1], "created", 0), p[0]), reverse=True)
    return [o for _, o in indexed]


def _expand(state: StripeState, node: Any, parts: list[str]) -> None:
    if not parts or not isinstance(node, dict):
        return
    key, rest = parts[0], parts[1:]
    if key == "payments" and node.get("object") == "invoice" and not rest:
        inv = state.invoice(node["id"])
        data = [state.invoice_payment_json(p) for p in inv.payments]
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
        val = _resolve(state, val)
        node[key] = val
    if isinstance(val, list):
        for elem in val:
            _expand(state, elem, rest)
    else:
        _expand(state, val, rest)


def _resolve(state: StripeState, obj_id: str) -> Any:
    b = state.books
    prefix = obj_id.split("_", 1)[0]
    if prefix == "cus" and obj_id in b.customers:
        return state.customer_json(b.customers[obj_id])
    if prefix == "sub" and obj_id in b.subscriptions:
        return state.subscription_json(b.subscriptions[obj_id])
    if prefix == "si" and obj_id in b.items:
        return state.item_json(b.items[obj_id])
    if prefix == "in" and obj_id in b.invoices:
        return state.invoice_json(b.invoices[obj_id])
    if prefix == "ii" and obj_id in b.invoice_items:
        return state.invoice_item_json(b.invoice_items[obj_id])
    if prefix == "price" and obj_id in b.prices:
        return state.price_json(b.prices[obj_id])
    if prefix == "prod" and obj_id in b.products:
        return state.product_json(b.products[obj_id])
    return obj_id


def created_filter(params: Params) -> Callable[[int], bool]:
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
