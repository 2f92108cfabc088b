"""Serve a :class:`StripeDouble` over HTTP on loopback (the ``stripe-sandbox`` command).

Part of ``stripe_sandbox``, a TEST AND DEMO TOOL: a fake Stripe that accepts any
``sk_test_`` key and moves no money.  Point the connector's ``api_base`` at it
to run seatsync without a Stripe account.  Besides Stripe's ``/v1/...`` paths it
offers control endpoints under ``/_sandbox/``:

- ``POST /_sandbox/clock/advance`` ``{"seconds": n}`` or ``{"to": unix}``;
- ``GET /_sandbox/state``: customers, subscriptions, invoices in plain JSON;
- ``POST /_sandbox/faults`` ``{"method", "path_regex", "status", "times",
  "apply_first", "error_code"}``; ``POST /_sandbox/payments/fail`` ``{"times",
  "customer"}``; ``POST /_sandbox/webhooks/flush``; ``GET /_sandbox/requests``;
- ``POST /_sandbox/invoices/<id>/payments`` ``{"amount"}`` (money arriving through Stripe,
  may overpay); ``POST /_sandbox/customers/<id>/cash_balance`` ``{"amount", "currency"}``.

With a ``webhook_url``, events are POSTed there signed like Stripe's, by a
background thread after each request (so a connector that calls back into
the sandbox from its webhook handler cannot deadlock it); failed deliveries
are logged and retried on the next round, never raised.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import flask
import requests
from werkzeug.serving import run_simple

from stripe_sandbox.calendar_math import iso
from stripe_sandbox.double import StripeDouble
from stripe_sandbox.errors import StripeError

log = logging.getLogger(__name__)

PostFn = Callable[..., Any]


@dataclass
class _Pending:
    event_id: str
    body: bytes
    attempts: int = 0


class WebhookForwarder:
    """Best-effort delivery of the double's events to one endpoint, with retry."""

    def __init__(
        self,
        double: StripeDouble,
        url: str,
        lock: threading.RLock,
        *,
        timeout: float = 2.0,
        post: PostFn = requests.post,
        max_attempts: int = 20,
    ) -> None:
        self.double = double
        self.url = url
        self.lock = lock
        self.timeout = timeout
        self.post = post
        self.max_attempts = max_attempts
        self.pending: list[_Pending] = []
        self.delivered = 0
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._deliver_lock = threading.Lock()

    def deliver_pending(self) -> int:
        """Send everything not yet delivered; returns how many were accepted (2xx)."""
        with self._deliver_lock:
            with self.lock:
                for body, _sig in self.double.take_webhook_deliveries():
                    self.pending.append(_Pending(json.loads(body)["id"], body))
            ok = 0
            still: list[_Pending] = []
            for item in self.pending:
                item.attempts += 1
                header = self.double.sign(item.body)  # re-signed: timestamps must be fresh
                try:
                    resp = self.post(
                        self.url,
                        data=item.body,
                        headers={
                            "Content-Type": "application/json; charset=utf-8",
                            "Stripe-Signature": header,
                            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                        },
                        timeout=self.timeout,
                    )
                    status = int(resp.status_code)
                except Exception as exc:  # best effort: never crash the sandbox
                    log.warning(
                        "stripe_sandbox: webhook %s to %s failed: %s", item.event_id, self.url, exc
                    )
                    status = 0
                if 200 <= status < 300:
                    ok += 1
                    continue
                if status:
                    log.warning(
                        "stripe_sandbox: webhook %s to %s answered %s",
                        item.event_id,
                        self.url,
                        status,
                    )
                if item.attempts < self.max_attempts:
                    still.append(item)
                else:
                    log.error(
                        "stripe_sandbox: giving up on webhook %s after %d attempts",
                        item.event_id,
                        item.attempts,
                    )
            self.pending = still
            self.delivered += ok
            return ok

    def start(self) -> None:
        """Run deliveries on a daemon thread, woken by :meth:`kick`."""
        if self._thread is not None:
            return

        def loop() -> None:
            while True:
                self._wake.wait(timeout=5.0)
                self._wake.clear()
                self.deliver_pending()

        self._thread = threading.Thread(target=loop, name="sandbox-webhooks", daemon=True)
        self._thread.start()

    def kick(self) -> None:
        self._wake.set()


def create_sandbox_app(
    double: StripeDouble,
    webhook_url: str | None,
    *,
    background_delivery: bool = True,
    post: PostFn = requests.post,
    lock: threading.RLock | None = None,
    latency_ms: int = 0,
) -> flask.Flask:
    """A Flask app serving ``double`` under ``/v1`` plus ``/_sandbox`` controls.

    ``background_delivery=False`` delivers webhooks synchronously after each
    request (deterministic, for tests); ``post`` is the HTTP client to use.
    ``latency_ms`` delays every ``/v1`` answer by that long (for benchmarks: Stripe
    takes a few hundred ms a write); the wait holds no lock, so requests overlap.
    ``/_sandbox`` controls answer at once.
    """
    if latency_ms < 0:
        raise ValueError(f"latency_ms must be >= 0, not {latency_ms}")
    app = flask.Flask("stripe_sandbox")
    guard = lock or threading.RLock()
    forwarder: WebhookForwarder | None = None
    if webhook_url:
        forwarder = WebhookForwarder(double, webhook_url, guard, post=post)
        if background_delivery:
            forwarder.start()
    app.extensions["stripe_sandbox"] = {"double": double, "lock": guard, "forwarder": forwarder}

    def after_change() -> None:
        if forwarder is None:
            return
        if background_delivery:
            forwarder.kick()
        else:
            forwarder.deliver_pending()

    @app.route("/v1/<path:rest>", methods=["GET", "POST", "DELETE"])
    def stripe_api(rest: str) -> flask.Response:
        req = flask.request
        if latency_ms:
            time.sleep(latency_ms / 1000)  # before taking the lock: requests wait side by side
        with guard:
            resp = double.request(
                req.method,
                "/v1/" + rest,
                query=req.query_string.decode("utf-8"),
                body=req.get_data(),
                headers=dict(req.headers),
            )
        after_change()
        out = flask.Response(
            json.dumps(resp.body, indent=2), status=resp.status, mimetype="application/json"
        )
        for k, v in resp.headers.items():
            if k.lower() != "content-type":
                out.headers[k] = v
        return out

    @app.post("/_sandbox/clock/advance")
    def advance() -> tuple[flask.Response, int]:
        data = flask.request.get_json(silent=True) or {}
        with guard:
            try:
                if "to" in data:
                    double.advance_to(int(data["to"]))
                elif "seconds" in data:
                    double.advance(int(data["seconds"]))
                else:
                    return flask.jsonify(error="pass {'seconds': n} or {'to': unix}"), 400
            except (TypeError, ValueError) as exc:
                return flask.jsonify(error=str(exc)), 400
            now = double.now
        after_change()
        return flask.jsonify(now=now, now_iso=iso(now)), 200

    @app.get("/_sandbox/state")
    def state() -> flask.Response:
        with guard:
            overview = double.state_overview()
        if forwarder is not None:
            overview["webhooks"] = {
                "url": forwarder.url,
                "delivered": forwarder.delivered,
                "failing": len(forwarder.pending),
            }
        return flask.jsonify(overview)

    @app.post("/_sandbox/faults")
    def faults() -> tuple[flask.Response, int]:
        data = flask.request.get_json(silent=True) or {}
        try:
            with guard:
                double.inject_fault(
                    str(data.get("method", "*")),
                    str(data["path_regex"]),
                    status=int(data.get("status", 500)),
                    times=int(data.get("times", 1)),
                    apply_first=bool(data.get("apply_first", False)),
                    error_code=data.get("error_code"),
                )
        except (KeyError, TypeError, ValueError) as exc:
            return flask.jsonify(error=f"bad fault spec: {exc}"), 400
        return flask.jsonify(ok=True), 200

    @app.post("/_sandbox/payments/fail")
    def fail_payments() -> flask.Response:
        data = flask.request.get_json(silent=True) or {}
        with guard:
            double.fail_next_payments(int(data.get("times", 1)), data.get("customer"))
        return flask.jsonify(ok=True)

    @app.post("/_sandbox/invoices/<invoice_id>/payments")
    def receive_payment(invoice_id: str) -> tuple[flask.Response, int]:
        """Money arriving through Stripe for an open invoice (may overpay)."""
        data = flask.request.get_json(silent=True) or {}
        try:
            with guard:
                invoice = double.receive_payment(invoice_id, int(data["amount"]))
        except (KeyError, TypeError, ValueError) as exc:
            return flask.jsonify(error=f"pass {{'amount': n}}: {exc}"), 400
        except StripeError as exc:
            return flask.jsonify(exc.body()), exc.status
        after_change()
        return flask.jsonify(invoice), 200

    @app.post("/_sandbox/customers/<customer_id>/cash_balance")
    def fund_cash_balance(customer_id: str) -> tuple[flask.Response, int]:
        """A bank transfer landing in the customer's cash balance."""
        data = flask.request.get_json(silent=True) or {}
        try:
            with guard:
                double.fund_cash_balance(
                    customer_id, int(data["amount"]), str(data.get("currency", "usd"))
                )
        except (KeyError, TypeError, ValueError) as exc:
            return flask.jsonify(error=f"pass {{'amount': n, 'currency': c}}: {exc}"), 400
        except StripeError as exc:
            return flask.jsonify(exc.body()), exc.status
        after_change()
        return flask.jsonify(ok=True), 200

    @app.post("/_sandbox/webhooks/flush")
    def flush() -> flask.Response:
        if forwarder is None:
            return flask.jsonify(delivered=0, failing=0, note="no webhook_url configured")
        delivered = forwarder.deliver_pending()
        return flask.jsonify(delivered=delivered, failing=len(forwarder.pending))

    @app.get("/_sandbox/requests")
    def recorded() -> flask.Response:
        with guard:
            rows = [
                {
                    "method": r.method,
                    "path": r.path,
                    "status": r.status,
                    "idempotency_key": r.idempotency_key,
                    "replayed": r.replayed,
                    "fault": r.fault,
                    "params": r.params,
                }
                for r in double.requests[-200:]
            ]
        return flask.jsonify(requests=rows)

    return app


_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def serve(
    host: str = "127.0.0.1",
    port: int = 12111,
    *,
    now: int | None = None,
    webhook_url: str | None = None,
    webhook_secret: str = "whsec_test_secret",
    double: StripeDouble | None = None,
    allow_non_loopback: bool = False,
    latency_ms: int = 0,
) -> None:
    """Run the sandbox with werkzeug (threaded; one lock serialises the double).

    Refuses non-loopback hosts unless told otherwise: it is a fake Stripe that
    accepts any ``sk_test_`` key.  ``latency_ms``: see :func:`create_sandbox_app`.
    """
    if host not in _LOOPBACK and not allow_non_loopback:
        raise ValueError(f"stripe sandbox only listens on loopback, not {host!r}")
    sandbox = double or StripeDouble(
        int(time.time()) if now is None else now, webhook_secret=webhook_secret
    )
    app = create_sandbox_app(sandbox, webhook_url, latency_ms=latency_ms)
    log.warning(
        "stripe_sandbox: FAKE Stripe (test/demo only, no real money) on http://%s:%d; "
        "webhooks -> %s (secret %s); API latency %d ms",
        host,
        port,
        webhook_url or "none",
        sandbox.webhook_secret,
        latency_ms,
    )
    run_simple(host, port, app, threaded=True, use_reloader=False)
