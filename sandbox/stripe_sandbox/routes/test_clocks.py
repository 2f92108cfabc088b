"""Routes for ``/v1/test_helpers/test_clocks`` (see :mod:`stripe_sandbox.state.test_clocks`
for how the double's one clock stands in for them).

Part of ``stripe_sandbox``, a test and demo tool: never used with real money.
"""

from __future__ import annotations

import re

from stripe_sandbox.errors import bad_request
from stripe_sandbox.form import Params, check_known, opt_str, req_int
from stripe_sandbox.objects import Json
from stripe_sandbox.routes.registry import newest_first, paginate, route
from stripe_sandbox.state import StripeState

_BASE = r"/v1/test_helpers/test_clocks"


@route("POST", _BASE)
def create_test_clock(state: StripeState, _m: re.Match[str], p: Params) -> Json:
    check_known(p, ["frozen_time", "name"])
    frozen_time = req_int(p, "frozen_time")
    if frozen_time <= 0:
        raise bad_request("Invalid frozen_time: must be a unix timestamp.", param="frozen_time")
    name = opt_str(p, "name")
    if name is not None and len(name) > 300:
        raise bad_request("Invalid name: must be at most 300 characters.", param="name")
    return state.clock_json(state.create_test_clock(frozen_time=frozen_time, name=name))


@route("GET", _BASE + r"/(?P<id>[^/]+)")
def get_test_clock(state: StripeState, m: re.Match[str], p: Params) -> Json:
    check_known(p, [])
    return state.clock_json(state.test_clock(m["id"]))


@route("DELETE", _BASE + r"/(?P<id>[^/]+)")
def delete_test_clock(state: StripeState, m: re.Match[str], p: Params) -> Json:
    check_known(p, [])
    return state.delete_test_clock(state.test_clock(m["id"]))


@route("POST", _BASE + r"/(?P<id>[^/]+)/advance")
def advance_test_clock(state: StripeState, m: re.Match[str], p: Params) -> Json:
    check_known(p, ["frozen_time"])
    clock = state.test_clock(m["id"])
    return state.advance_test_clock(clock, req_int(p, "frozen_time"))


@route("GET", _BASE)
def list_test_clocks(state: StripeState, _m: re.Match[str], p: Params) -> Json:
    check_known(p, ["limit", "starting_after", "ending_before"])
    clocks = newest_first(list(state.books.test_clocks.values()))
    return paginate([state.clock_json(c) for c in clocks], p, _BASE)
