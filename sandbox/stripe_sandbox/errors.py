"""Stripe-shaped API errors raised inside the sandbox double.

Part of ``stripe_sandbox``, a test and demo tool: never used with real money.
Handlers raise :class:`StripeError`; the router turns it into the JSON body and
status code that Stripe itself would return, so the connector's error handling
is exercised against the real shapes.
"""

from __future__ import annotations

from typing import Any


class StripeError(Exception):
    """An error response: HTTP status plus Stripe's ``{"error": {...}}`` body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code is not None:
            err["code"] = self.code
            err["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param is not None:
            err["param"] = self.param
        err.update(self.extra)
        return {"error": err}


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> StripeError:
    """400 ``invalid_request_error`` (bad or missing parameters)."""
    return StripeError(400, message, param=param, code=code)


def missing_param(param: str) -> StripeError:
    return StripeError(
        400, f"Missing required param: {param}.", param=param, code="parameter_missing"
    )


def unknown_param(param: str) -> StripeError:
    return StripeError(
        400,
        f"Received unknown parameter: {param}",
        param=param,
        code="parameter_unknown",
    )


def no_such(kind: str, obj_id: str, *, param: str | None = None) -> StripeError:
    """Missing object: 404 when named in the path, 400 when named in a parameter."""
    return StripeError(
        404 if param is None else 400,
        f"No such {kind}: '{obj_id}'",
        code="resource_missing",
        param=param if param is not None else "id",
    )


def card_declined() -> StripeError:
    return StripeError(
        402,
        "Your card was declined.",
        type="card_error",
        code="card_declined",
        extra={"decline_code": "generic_decline"},
    )
