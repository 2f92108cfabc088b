"""``StripeDouble``: a stateful, deterministic in-memory Stripe for tests and demos.

Part of ``stripe_sandbox``, a TEST AND DEMO TOOL: it never talks to Stripe and
must never be used with real money.  It answers the v1 HTTP calls the seatsync
connector makes, with Stripe's shapes, status codes and idempotency rules, on a
clock that only moves when a test moves it.  On top it offers what a test
needs and Stripe cannot give: fault injection (including "the write was applied
but the response was lost"), a record of every request, armed payment
failures, and signed webhook deliveries.

Longer than the sandbox's other modules on purpose: :meth:`StripeDouble.request`
is the one place where the order of authentication, fault injection, idempotent
replay and rollback is decided, and the test controls beside it act on exactly
that state; the billing rules live in :mod:`stripe_sandbox.state`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from stripe_sandbox.calendar_math import iso
from stripe_sandbox.errors import StripeError
from stripe_sandbox.form import Params, decode_form, decode_pairs
from stripe_sandbox.objects import Json, Subscription
from stripe_sandbox.routes import dispatch
from stripe_sandbox.state import ArmedFailure, StripeState

log = logging.getLogger(__name__)

API_VERSION = "2026-10-28.endive"


@dataclass
class Fault:
    """An armed failure for requests matching ``method`` and ``path_regex`` (fullmatch)."""

    method: str
    path_regex: re.Pattern[str]
    status: int
    remaining: int
    apply_first: bool
    error_code: str | None
    kind: str
    should_retry: bool | None

    def matches(self, method: str, path: str) -> bool:
        return (
            self.remaining > 0
            and self.method in ("*", method)
            and self.path_regex.fullmatch(path) is not None
        )

    def response_body(self) -> Json:
        if self.status == 429:
            code = self.error_code or "rate_limit"
            message = (
                "This object cannot be accessed right now because another API request or "
                "Stripe process is currently accessing it. If you see this error "
                "intermittently, retry the request. If you see this error frequently and "
                "are making multiple concurrent requests to a single object, make your "
                "requests serially or at a lower rate."
                if code == "lock_timeout"
                else "Request rate limit exceeded. Learn more about rate limits here "
                "https://stripe.com/docs/rate-limits."
            )
            return StripeError(429, message, code=code).body()
        if self.status == 402:
            return StripeError(
                402,
                "Your card was declined.",
                type="card_error",
                code=self.error_code or "card_declined",
            ).body()
        if self.status >= 500:
            return StripeError(
                self.status, "An unknown error occurred", type="api_error", code=self.error_code
            ).body()
        return StripeError(
            self.status, "Injected error (stripe_sandbox fault injection).", code=self.error_code
        ).body()


@dataclass
class RecordedRequest:
    """One request as the double saw it, for assertions on what the connector sent."""

    method: str
    path: str
    params: Params
    idempotency_key: str | None
    status: int
    request_id: str
    api_key: str | None
    stripe_version: str | None
    replayed: bool = False
    fault: bool = False
    time: int = 0


@dataclass
class Response:
    """Full response: status, JSON body, headers; ``timeout`` asks the transport to time out."""

    status: int
    body: Json
    headers: dict[str, str] = field(default_factory=dict)
    timeout: bool = False


@dataclass
class _Stored:
    method: str
    path: str
    params: Params
    status: int
    body_json: str
    request_id: str
    stored_at: int  # the double's clock: Stripe forgets a key after 24 hours


# Stripe keeps an idempotency key for at least 24 hours; then the same key runs anew.
IDEMPOTENCY_KEY_TTL = 24 * 3600


class StripeDouble:
    """In-memory Stripe (test mode only) with a movable clock.

    ``handle`` is the whole HTTP surface; the responses adapter and the Flask
    server are thin transports around it.
    """

    def __init__(
        self,
        now: int,
        webhook_secret: str = "whsec_test_secret",
        api_version: str = API_VERSION,
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.state = StripeState(now, api_version)
        self.webhook_secret = webhook_secret
        self.api_version = api_version
        self.wall_clock = wall_clock
        self.requests: list[RecordedRequest] = []
        self.faults: list[Fault] = []
        self._idempotency: dict[tuple[str, str], _Stored] = {}
        self._request_counter = 0

    # --- clock ---------------------------------------------------------------------

    @property
    def now(self) -> int:
        """The double's clock (unix seconds); assigning moves it forward like ``advance_to``."""
        return self.state.now

    @now.setter
    def now(self, ts: int) -> None:
        self.state.advance_to(ts)

    def advance_to(self, ts: int) -> None:
        """Move the clock to ``ts``; renewals and auto-finalizations on the way happen."""
        self.state.advance_to(ts)

    def advance(self, seconds: int) -> None:
        self.state.advance_to(self.state.now + seconds)

    # --- test controls -----------------------------------------------------------

    def inject_fault(
        self,
        method: str,
        path_regex: str,
        *,
        status: int = 500,
        times: int = 1,
        apply_first: bool = False,
        error_code: str | None = None,
        kind: str = "error",
        should_retry: bool | None = None,
    ) -> Fault:
        """Make the next ``times`` matching requests fail with ``status``.

        ``apply_first=False``: the request is rejected before it runs (nothing
        changes, nothing is stored under its idempotency key).  ``apply_first=True``:
        the request runs and its real response is stored under its idempotency
        key, then the failure is returned instead - "the write happened but the
        response was lost".  ``kind="timeout"`` asks the transport to raise a
        read timeout instead of returning the error.
        """
        if kind not in ("error", "timeout"):
            raise ValueError("kind must be 'error' or 'timeout'")
        fault = Fault(
            method=method.upper(),
            path_regex=re.compile(path_regex),
            status=status,
            remaining=times,
            apply_first=apply_first,
            error_code=error_code,
            kind=kind,
            should_retry=should_retry,
        )
        self.faults.append(fault)
        return fault

    def fail_next_payments(self, times: int = 1, customer: str | None = None) -> None:
        """Decline the next ``times`` automatic payment attempts (of ``customer``, or anyone)."""
        self.state.books.payment_failures.append(ArmedFailure(customer, times))

    def receive_payment(self, invoice_id: str, amount: int) -> Json:
        """Simulate money arriving through Stripe for an open invoice (may overpay)."""
        inv = self.state.invoice(invoice_id)
        self.state.request = (None, None)
        self.state.receive_payment(inv, amount)
        return self.state.invoice_json(inv)

    def fund_cash_balance(self, customer_id: str, amount: int, currency: str = "usd") -> None:
        """Simulate a bank transfer landing in the customer's cash balance (not applied)."""
        customer = self.state.customer(customer_id)
        self.state.request = (None, None)
        self.state.fund_cash_balance(customer, amount=amount, currency=currency)

    def seed_subscriptions(
        self, price_id: str, quantities: Sequence[int], *, billing_mode: str = "flexible"
    ) -> list[Subscription]:
        """Many subscriptions at once, without API calls (scale tests, benchmarks): one
        customer and one item of ``price_id`` per quantity, nothing invoiced, no events."""
        return self.state.seed_subscriptions(
            self.state.price(price_id), quantities, billing_mode=billing_mode
        )

    def requests_to(self, method: str, path_regex: str) -> list[RecordedRequest]:
        """Recorded requests matching ``method`` and ``path_regex`` (fullmatch)."""
        pattern = re.compile(path_regex)
        return [
            r for r in self.requests if r.method == method.upper() and pattern.fullmatch(r.path)
        ]

    # --- HTTP surface ----------------------------------------------------------------

    def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | str | None,
        body: str | bytes | None,
        headers: Mapping[str, str],
    ) -> tuple[int, Json]:
        """Answer one HTTP request as Stripe would: ``(status, JSON body)``."""
        resp = self.request(method, path, query=query, body=body, headers=headers)
        return resp.status, resp.body

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | str | None = None,
        body: str | bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Like :meth:`handle`, with response headers and the fault's timeout flag."""
        method = method.upper()
        hdrs = {k.lower(): v for k, v in (headers or {}).items()}
        self._request_counter += 1
        request_id = f"req_Sbx{self._request_counter:011d}"
        base_headers = {
            "Request-Id": request_id,
            "Stripe-Version": self.api_version,
            "Content-Type": "application/json",
        }
        idem_key = hdrs.get("idempotency-key") if method == "POST" else None
        api_key = _bearer(hdrs.get("authorization"))
        record = RecordedRequest(
            method=method,
            path=path,
            params={},
            idempotency_key=idem_key,
            status=0,
            request_id=request_id,
            api_key=api_key,
            stripe_version=hdrs.get("stripe-version"),
            time=self.state.now,
        )
        self.requests.append(record)

        def finish(
            status: int,
            payload: Json,
            extra: Mapping[str, str] | None = None,
            timeout: bool = False,
        ) -> Response:
            record.status = status
            return Response(status, payload, {**base_headers, **(extra or {})}, timeout)

        try:
            if method in ("GET", "DELETE"):
                params = (
                    decode_pairs(query.items())
                    if isinstance(query, Mapping)
                    else decode_form(query)
                )
            else:
                params = decode_form(body)
        except StripeError as err:
            return finish(err.status, err.body())
        record.params = params

        auth_error = _check_key(hdrs.get("authorization"), api_key)
        if auth_error is not None:
            return finish(401, auth_error.body())

        fault = next((f for f in self.faults if f.matches(method, path)), None)
        if fault is not None:
            fault.remaining -= 1
            record.fault = True
            if not fault.apply_first:
                return finish(
                    fault.status,
                    fault.response_body(),
                    _fault_headers(fault),
                    fault.kind == "timeout",
                )

        if idem_key is not None and api_key is not None:
            stored = self._idempotency.get((api_key, idem_key))
            if stored is not None and self.state.now - stored.stored_at >= IDEMPOTENCY_KEY_TTL:
                del self._idempotency[(api_key, idem_key)]
                stored = None
            if stored is not None:
                return self._replay(stored, method, path, params, idem_key, record, finish)

        status, payload = self._execute(method, path, params, request_id, idem_key)
        if idem_key is not None and api_key is not None and status in (200, 402):
            self._idempotency[(api_key, idem_key)] = _Stored(
                method, path, params, status, json.dumps(payload), request_id, self.state.now
            )
        if fault is not None:
            return finish(
                fault.status, fault.response_body(), _fault_headers(fault), fault.kind == "timeout"
            )
        return finish(status, payload)

    def _replay(
        self,
        stored: _Stored,
        method: str,
        path: str,
        params: Params,
        key: str,
        record: RecordedRequest,
        finish: Callable[..., Response],
    ) -> Response:
        if (stored.method, stored.path) != (method, path):
            err = StripeError(
                400,
                "Keys for idempotent requests can only be used for the same endpoint they "
                f"were first used for ('{stored.method} {stored.path}' vs '{method} {path}'). "
                f"Try using a key other than '{key}' if you meant to execute a different "
                "request.",
                type="idempotency_error",
            )
            return finish(400, err.body())
        if stored.params != params:
            err = StripeError(
                400,
                "Keys for idempotent requests can only be used with the same parameters "
                f"they were first used with. Try using a key other than '{key}' if you "
                "meant to execute a different request.",
                type="idempotency_error",
            )
            return finish(400, err.body())
        record.replayed = True
        return finish(
            stored.status,
            json.loads(stored.body_json),
            {"Idempotent-Replayed": "true", "Original-Request": stored.request_id},
        )

    def _execute(
        self, method: str, path: str, params: Params, request_id: str, idem_key: str | None
    ) -> tuple[int, Json]:
        """Run one request atomically: on any error the state is rolled back."""
        snap = self.state.snapshot()
        self.state.request = (request_id, idem_key)
        try:
            result = dispatch(self.state, method, path, params)
        except StripeError as err:
            self.state.restore(snap)
            return err.status, err.body()
        except Exception:  # a sandbox bug must not take the connector's test run down
            log.exception("stripe_sandbox: internal error on %s %s", method, path)
            self.state.restore(snap)
            return 500, StripeError(
                500, "Internal sandbox error (see the log).", type="api_error"
            ).body()
        finally:
            self.state.request = (None, None)
        self.state.commit(snap)
        return 200, result

    # --- events and webhooks -----------------------------------------------------------

    @property
    def events(self) -> list[Json]:
        """All recorded events, oldest first."""
        return [self.state.event_json(e) for e in self.state.events]

    def sign(self, payload: bytes, timestamp: int | None = None) -> str:
        """A ``Stripe-Signature`` header for ``payload``, signed now (wall clock).

        Stripe signs at delivery time with the real clock (test clocks only move
        object times), and ``construct_event`` checks it against the real clock.
        """
        t = int(self.wall_clock()) if timestamp is None else timestamp
        mac = hmac.new(self.webhook_secret.encode(), f"{t}.".encode() + payload, hashlib.sha256)
        return f"t={t},v1={mac.hexdigest()}"

    def take_webhook_deliveries(self) -> list[tuple[bytes, str]]:
        """Undelivered events as ``(raw JSON body, Stripe-Signature header)``, oldest first."""
        out: list[tuple[bytes, str]] = []
        for evt in self.state.events:
            if evt.delivered:
                continue
            payload = json.dumps(self.state.event_json(evt), indent=2).encode()
            evt.delivered = True
            out.append((payload, self.sign(payload)))
        return out

    # --- overview -------------------------------------------------------------------

    def state_overview(self) -> Json:
        """A human-readable summary of the sandbox (for ``GET /_sandbox/state``)."""
        b = self.state.books
        subs = []
        for s in b.subscriptions.values():
            items = []
            for si_id in s.items:
                si = b.items[si_id]
                price = b.prices[si.price]
                items.append(
                    {
                        "id": si.id,
                        "price": price.id,
                        "product": b.products[price.product].name,
                        "unit_amount": price.unit_amount,
                        "interval": price.interval,
                        "quantity": si.quantity,
                        "billed_quantity": si.billed_quantity,
                        "current_period": [iso(si.period_start), iso(si.period_end)],
                    }
                )
            subs.append(
                {
                    "id": s.id,
                    "customer": s.customer,
                    "status": s.status,
                    "billing_mode": s.billing_mode,
                    "items": items,
                    "latest_invoice": s.latest_invoice,
                }
            )
        invoices = [
            {
                "id": inv.id,
                "customer": inv.customer,
                "subscription": inv.subscription,
                "status": inv.status,
                "billing_reason": inv.billing_reason,
                "created": iso(inv.created),
                "total": inv.total,
                "amount_due": inv.amount_due,
                "amount_paid": inv.amount_paid,
                "lines": [
                    {
                        "description": li.description,
                        "amount": li.amount,
                        "quantity": li.quantity,
                        "proration": li.proration,
                        "period": [iso(li.period_start), iso(li.period_end)],
                    }
                    for li in inv.lines
                ],
            }
            for inv in b.invoices.values()
        ]
        pending = [
            {
                "id": ii.id,
                "customer": ii.customer,
                "subscription": ii.subscription,
                "description": ii.description,
                "amount": ii.amount,
            }
            for ii in b.invoice_items.values()
            if ii.invoice is None
        ]
        return {
            "note": "stripe_sandbox: a test/demo Stripe double - no real money",
            "now": self.state.now,
            "now_iso": iso(self.state.now),
            "customers": [
                {
                    "id": c.id,
                    "email": c.email,
                    "name": c.name,
                    "balance": c.balance,
                    "currency": c.currency,
                }
                for c in b.customers.values()
            ],
            "subscriptions": subs,
            "invoices": invoices,
            "pending_invoice_items": pending,
            "events": len(self.state.events),
            "undelivered_events": sum(1 for e in self.state.events if not e.delivered),
        }


def _bearer(header: str | None) -> str | None:
    if header is None:
        return None
    parts = header.split(None, 1)
    if len(parts) != 2 or parts[0].lower() != "bearer":
        return None
    return parts[1].strip()


def _check_key(header: str | None, key: str | None) -> StripeError | None:
    if header is None or key is None:
        return StripeError(
            401,
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
            "YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details.",
        )
    if not key.startswith("sk_test_") or len(key) <= len("sk_test_"):
        shown = key[:8] + "*" * max(0, len(key) - 12) + key[-4:] if len(key) > 12 else key
        return StripeError(
            401,
            f"Invalid API Key provided: {shown} (the Stripe sandbox accepts only sk_test_ keys)",
        )
    return None


def _fault_headers(fault: Fault) -> dict[str, str]:
    if fault.should_retry is None:
        return {}
    return {"Stripe-Should-Retry": "true" if fault.should_retry else "false"}
