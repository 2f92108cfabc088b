"""Per-request metrics, and the request id on every log record of a request.

Installed before the other request hooks (`connector.app`), so the clock starts first and
the count is made last. Requests are labelled by their URL rule
(`/v1/subscriptions/<id>/seats/<seat_type>/licenses`), never by the raw path: the series
stay few whatever ids are asked for; a path no rule matches is `unmatched`.
"""

from __future__ import annotations

import time

from flask import Flask, Response, g, request

from connector.adapters.metrics import HTTP_DURATION, HTTP_REQUESTS
from connector.observability import bind_request_id

UNMATCHED = "unmatched"
# Any other method a client invents is counted as OTHER (a label per invention: no).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "other"


def install_instrumentation(app: Flask) -> None:
    @app.before_request
    def _start() -> None:
        g.started_at = time.perf_counter()

    @app.after_request
    def _count(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule is not None else UNMATCHED
        method = request.method if request.method in METHODS else OTHER
        HTTP_REQUESTS.labels(method, route, str(response.status_code)).inc()
        started = g.get("started_at")
        if started is not None:
            HTTP_DURATION.labels(method, route).observe(time.perf_counter() - started)
        return response

    @app.teardown_request
    def _forget_request_id(_error: BaseException | None) -> None:
        bind_request_id(None)  # set by connector.api.context with the Request-Id
