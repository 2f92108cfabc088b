"""Routes for ``/v1/events``.

Part of ``stripe_sandbox``, a test and demo tool: never used with real money.
"""

from __future__ import annotations

import re

from stripe_sandbox.errors import StripeError
from stripe_sandbox.form import Params, check_known, opt_list, opt_str
from stripe_sandbox.objects import Json
from stripe_sandbox.routes.registry import created_filter, paginate, route
from stripe_sandbox.state import StripeState


@route("GET", r"/v1/events/(?P<id>[^/]+)")
def get_event(state: StripeState, m: re.Match[str], p: Params) -> Json:
    check_known(p, [])
    for evt in state.events:
        if evt.id == m["id"]:
            return state.event_json(evt)
    raise StripeError(404, f"No such event: '{m['id']}'", code="resource_missing", param="id")


@route("GET", r"/v1/events")
def list_events(state: StripeState, _m: re.Match[str], p: Params) -> Json:
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
    created = created_filter(p)

    def type_ok(t: str) -> bool:
        if type_ is not None:
            if type_.endswith(".*"):
                return t.startswith(type_[:-1])
            return t == type_
        return types is None or t in types

    evts = [x for x in reversed(state.events) if type_ok(x.type) and created(x.created)]
    # Paginate ids, then render only the page: rendering every event for every page made
    # listing n events cost n * n / 100 renders.
    page = paginate([{"id": x.id} for x in evts], p, "/v1/events")
    by_id = {x.id: x for x in evts}
    page["data"] = [state.event_json(by_id[stub["id"]]) for stub in page["data"]]
    return page
