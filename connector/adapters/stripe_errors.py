"""Every Stripe error, classified in one place (closed by default: unknown means permanent).

RETRYABLE: try again later with the same idempotency key — the request may or may not have
been applied, and the key makes the retry safe.
NOT_FOUND: the object is gone or never existed.
REJECTED: Stripe refused the request as made (our fault or the account's state); retrying
the same request can never succeed.
"""

from __future__ import annotations

from enum import StrEnum

import stripe


class StripeErrorKind(StrEnum):
    RETRYABLE = "retryable"
    NOT_FOUND = "not_found"
    REJECTED = "rejected"


def classify(error: stripe.StripeError) -> StripeErrorKind:
    # Network trouble: the request may not have arrived, or its answer was lost.
    if isinstance(error, stripe.APIConnectionError):
        return StripeErrorKind.RETRYABLE
    # 429: rate limits and lock_timeout on concurrent writes to one object.
    if isinstance(error, stripe.RateLimitError):
        return StripeErrorKind.RETRYABLE
    status = error.http_status or 0
    headers = {name.lower(): value for name, value in (error.headers or {}).items()}
    # 409 (idempotency key in use by a concurrent request) and 5xx are transient by
    # Stripe's own account; so is anything Stripe flags with Stripe-Should-Retry.
    if status == 409 or status >= 500 or headers.get("stripe-should-retry") == "true":
        return StripeErrorKind.RETRYABLE
    if status == 404 or error.code == "resource_missing":
        return StripeErrorKind.NOT_FOUND
    # 400, 401, 402, 403: retrying the same request gives the same answer.
    return StripeErrorKind.REJECTED
